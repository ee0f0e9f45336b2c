//! Flood and scanner protection of the SIP edge: per-source rate limits that ban, a ban list
//! shared across replicas, scanner User-Agents dropped, bans after repeated authentication
//! failures from one source, lockouts per account name, trusted networks exempt.
//!
//! [`Protection`] is sans-IO (ADR 0001): it reads no clock and does no I/O. Time comes in as
//! unix milliseconds, not as an `Instant`, because bans travel between machines with an
//! absolute end ([`proto::v1::Ban::until_unix_ms`]). The engine calls [`Protection::admit`]
//! for every datagram or stream frame before parsing it; the registrar reports digest
//! outcomes with [`Protection::auth_failed`] / [`Protection::auth_succeeded`] and asks
//! [`Protection::account_locked`] before checking a password. Bans decided here come out of
//! [`Protection::poll_new_ban`]; [`sync::BanSync`] publishes them to the other replicas and the
//! store, and feeds theirs back through [`Protection::apply_ban`].
//!
//! Decisions that someone could undo by accident:
//!
//! - **Trusted networks** (e.g. the city's own NAT with thousands of phones behind one
//!   address) are neither rate-limited nor tracked for authentication failures, and a ban for
//!   a trusted address (local or remote) is never applied. They are still subject to account
//!   lockouts (those are per name, not per source) and to scanner drops: dropping a scanner
//!   costs a legitimate phone nothing, and a scanner inside a trusted network is still one.
//! - **Scanners are dropped, not banned.** A single spoofed UDP datagram with a scanner
//!   User-Agent would otherwise ban any address an attacker chooses. A scanner that also
//!   floods is banned by the rate limit like any flooder.
//! - **Source keys**: an IPv4-mapped IPv6 address counts as its IPv4 address, and an IPv6
//!   source counts as its /64 (one subscriber's prefix under RFC 6177 practice): an attacker
//!   holding a /64 must not get 2^64 fresh buckets. Bans on IPv6 are therefore on the /64,
//!   printed as its network address (`2001:db8:1:2::`).
//! - **Rate limit**: a token bucket per source ([`ProtectionConfig::rate_per_second`],
//!   [`ProtectionConfig::burst`]). The first request that finds the bucket empty bans the
//!   source for [`ProtectionConfig::ban_duration`] (and is counted as `dropped_rate`; the
//!   requests after it as `dropped_banned`). With the defaults a 500 requests/s flood empties
//!   its 200-token burst in 0.5 s.
//! - **Authentication**: call [`Protection::auth_failed`] only for a wrong digest response,
//!   never for the first challenge (401/407 without credentials) or a stale nonce, which
//!   every phone sees in normal operation.
//! - **Account lockout trade-off**: lockouts count per name whatever the source, so an
//!   attacker who knows an account name can keep it locked out (a denial of service against
//!   that one account). That is why the lockout needs more failures than a source ban (20 vs
//!   10) and lasts less (5 min). A locked account is answered exactly like a wrong password, and
//!   names that do not exist are counted and locked the same way, so neither the answers nor
//!   the lockouts tell which accounts exist. Lockouts are per replica (not shared): a
//!   distributed guesser gets `replicas ×` the attempts.
//! - **Memory**: per-source state, bans and per-account state are each bounded by
//!   [`ProtectionConfig::max_tracked_sources`]; see `sources.rs` for the eviction order.
//!   [`Protection::purge`] drops what no longer matters; call it about once a second.
//! - **`edge_id`**: the core does not know which replica it runs in; [`Protection::poll_new_ban`]
//!   leaves `Ban::edge_id` empty and [`sync::BanSync`] fills it in before publishing.

mod bans;
mod lockout;
mod rate;
mod scanner;
mod sources;
pub mod sync;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use self::bans::BanList;
use self::lockout::{AccountLockouts, LockoutPolicy};
use self::rate::BucketShape;
use self::scanner::ScannerMatcher;
use self::sources::SourceTable;

pub use self::sync::{BanPublisher, BanSync, BanSyncError, BanSyncOptions};

/// Default scanner User-Agents, matched as case-insensitive substrings of the `User-Agent`
/// header. Each is the default or fixed User-Agent of a tool or worm whose only use against a
/// PBX is reconnaissance or password guessing. Left out on purpose: `sipsak` and `sipp`
/// (legitimate test tools, and SIPp drives our own load tests), and names that scanners
/// merely imitate (`Asterisk PBX`, `eyeBeam`, `PortSIP`), which real phones and PBXes send.
pub const DEFAULT_SCANNER_USER_AGENTS: &[&str] = &[
    // SIPVicious svmap/svwar/svcrack (OSS default) and SIPVicious PRO.
    "friendly-scanner",
    "sipvicious",
    // sipcli, the command-line brute forcer.
    "sipcli",
    "sip-scan",
    // The Sundayddr worm.
    "sundayddr",
    // iWar war dialer, SiVuS scanner, SIP Army Knife fuzzer.
    "iwar",
    "sivus",
    "siparmyknife",
    // VaxSIP SDK user agents shipped in brute-force kits.
    "vaxsipuseragent",
    "vaxipuseragent",
    "pplsip",
    // Nmap's SIP scripts ("Nmap NSE").
    "nmap",
];

/// How the edge protects itself. [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// Sustained requests per second per untrusted source (default 100). Zero is taken as 1.
    pub rate_per_second: u32,
    /// Token bucket depth: requests a source may send at once (default 200). Zero is taken
    /// as 1.
    pub burst: u32,
    /// How long a ban decided here lasts (default 60 s).
    pub ban_duration: Duration,
    /// Authentication failures from one untrusted source within
    /// [`Self::auth_failure_window`] that ban it (default 10).
    pub auth_failures_before_ban: u32,
    /// The window counting failures, per source and per account (default 60 s). Fixed
    /// windows: a patient guesser gets at most twice the threshold across a window boundary.
    pub auth_failure_window: Duration,
    /// Authentication failures for one username, from any source, that lock it (default 20).
    pub account_failures_before_lockout: u32,
    /// How long a lockout lasts (default 300 s).
    pub lockout_duration: Duration,
    /// Sources exempt from rate limits, source bans and remote bans (default none).
    pub trusted_networks: Vec<IpNet>,
    /// Case-insensitive substrings of scanner User-Agents (default
    /// [`DEFAULT_SCANNER_USER_AGENTS`]); dropped from every source, trusted or not.
    pub scanner_user_agents: Vec<String>,
    /// Upper bound on the sources tracked, on the bans held and on the account names tracked,
    /// each (default 100 000): spoofed-source floods must not grow memory without bound.
    pub max_tracked_sources: usize,
}

impl Default for ProtectionConfig {
    fn default() -> ProtectionConfig {
        ProtectionConfig {
            rate_per_second: 100,
            burst: 200,
            ban_duration: Duration::from_secs(60),
            auth_failures_before_ban: 10,
            auth_failure_window: Duration::from_secs(60),
            account_failures_before_lockout: 20,
            lockout_duration: Duration::from_secs(300),
            trusted_networks: Vec::new(),
            scanner_user_agents: DEFAULT_SCANNER_USER_AGENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            max_tracked_sources: 100_000,
        }
    }
}

/// What to do with an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on: parse it and hand it to the transaction layer.
    Admit,
    /// Drop it silently (no answer: an answer is what a flooder or scanner wants).
    Drop(DropReason),
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The source is banned (here or by another replica).
    Banned,
    /// The source exceeded its rate with this message, and is banned from now on.
    RateLimited,
    /// The User-Agent is a known scanner's.
    Scanner,
}

impl DropReason {
    /// A stable label, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Banned => "banned",
            DropReason::RateLimited => "rate",
            DropReason::Scanner => "scanner",
        }
    }
}

/// Why this replica banned a source; the strings are `Ban::reason` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BanReason {
    Rate,
    AuthFailures,
}

impl BanReason {
    fn as_str(self) -> &'static str {
        match self {
            BanReason::Rate => "rate",
            BanReason::AuthFailures => "auth-failures",
        }
    }

    /// The `reason` label of `calanque_protection_bans_total` (docs/metrics.md).
    fn metric_label(self) -> &'static str {
        match self {
            BanReason::Rate => "flood",
            BanReason::AuthFailures => "auth_failures",
        }
    }
}

/// The metric label of a ban this replica decided, from its `Ban::reason`; `None` for a
/// reason this version does not give.
pub(crate) fn ban_metric_label(wire: &str) -> Option<&'static str> {
    [BanReason::Rate, BanReason::AuthFailures]
        .into_iter()
        .find(|reason| reason.as_str() == wire)
        .map(BanReason::metric_label)
}

/// What [`Protection::apply_ban`] did with a ban from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanOutcome {
    /// The source is banned until the ban's end (new, or lengthened).
    Applied,
    /// An existing ban already lasts at least as long.
    AlreadyBanned,
    /// The ban has already ended.
    Expired,
    /// The address is in a trusted network; trusted sources are never banned.
    Trusted,
    /// `Ban::address` is not an IP address.
    InvalidAddress,
}

/// Counters since start, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtectionStats {
    /// Messages dropped because their source was banned.
    pub dropped_banned: u64,
    /// Messages that exceeded their source's rate (each one banned its source).
    pub dropped_rate: u64,
    /// Messages dropped for a scanner User-Agent.
    pub dropped_scanner: u64,
    /// Bans decided by this replica.
    pub bans_issued: u64,
    /// Bans from other replicas or the store that were applied.
    pub bans_applied: u64,
    /// Accounts locked.
    pub lockouts: u64,
    /// Locally decided bans not handed to [`Protection::poll_new_ban`] because nobody drained
    /// the queue (they still apply here).
    pub bans_not_published: u64,
    /// Sources tracked now.
    pub tracked_sources: usize,
    /// Bans held now (including ended ones not yet purged).
    pub bans_held: usize,
    /// Account names tracked now.
    pub tracked_accounts: usize,
}

/// How many locally decided bans wait for [`Protection::poll_new_ban`] at most.
const MAX_PENDING_BANS: usize = 4096;

/// The protection state of one edge replica. See the module documentation.
#[derive(Debug)]
pub struct Protection {
    trusted_networks: Vec<IpNet>,
    scanners: ScannerMatcher,
    ban_ms: u64,
    auth_failures_before_ban: u32,
    sources: SourceTable,
    bans: BanList,
    lockouts: AccountLockouts,
    pending_bans: VecDeque<proto::v1::Ban>,
    stats: ProtectionStats,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The key under which a source is tracked and banned (see the module documentation).
fn source_key(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

impl Protection {
    pub fn new(config: ProtectionConfig) -> Protection {
        let window_ms = millis(config.auth_failure_window);
        Protection {
            scanners: ScannerMatcher::new(&config.scanner_user_agents),
            ban_ms: millis(config.ban_duration),
            auth_failures_before_ban: config.auth_failures_before_ban.max(1),
            sources: SourceTable::new(
                config.max_tracked_sources,
                BucketShape::new(config.rate_per_second, config.burst),
                window_ms,
            ),
            bans: BanList::new(config.max_tracked_sources),
            lockouts: AccountLockouts::new(LockoutPolicy {
                failures_before_lockout: config.account_failures_before_lockout,
                window_ms,
                lockout_ms: millis(config.lockout_duration),
                max_accounts: config.max_tracked_sources,
            }),
            trusted_networks: config.trusted_networks,
            pending_bans: VecDeque::new(),
            stats: ProtectionStats::default(),
        }
    }

    fn is_trusted(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        self.trusted_networks
            .iter()
            .any(|net| net.contains(&source))
    }

    /// Decides on one datagram or stream frame before it is parsed: a trusted-network check,
    /// a ban lookup, a token from the source's bucket, and a byte scan of the User-Agent
    /// header. Exceeding the rate from an untrusted source bans it (see
    /// [`Protection::poll_new_ban`]).
    pub fn admit(&mut self, now_ms: u64, source: IpAddr, message: &[u8]) -> Admission {
        if !self.is_trusted(source) {
            let key = source_key(source);
            if self.bans.is_banned(now_ms, key) {
                self.stats.dropped_banned += 1;
                return Admission::Drop(DropReason::Banned);
            }
            let shape = self.sources.shape();
            if !self
                .sources
                .entry(now_ms, key)
                .bucket
                .try_take(now_ms, shape)
            {
                self.sources.remove(key);
                self.ban(now_ms, key, BanReason::Rate);
                self.stats.dropped_rate += 1;
                return Admission::Drop(DropReason::RateLimited);
            }
        }
        if self.scanners.matches(message) {
            self.stats.dropped_scanner += 1;
            return Admission::Drop(DropReason::Scanner);
        }
        Admission::Admit
    }

    /// A wrong digest response from `source` for `username` (as the client sent it, whether
    /// or not such an account exists). May lock the account, and ban an untrusted source.
    pub fn auth_failed(&mut self, now_ms: u64, source: IpAddr, username: &str) {
        if self.lockouts.failed(now_ms, username) {
            self.stats.lockouts += 1;
        }
        if self.is_trusted(source) {
            return;
        }
        let key = source_key(source);
        if self.bans.is_banned(now_ms, key) {
            // Already banned: counting on would only cost memory.
            return;
        }
        let window_ms = self.sources.auth_window_ms();
        let state = self.sources.entry(now_ms, key);
        if now_ms.saturating_sub(state.auth_window_start_ms) >= window_ms {
            state.auth_failures = 0;
            state.auth_window_start_ms = now_ms;
        }
        state.auth_failures += 1;
        if state.auth_failures >= self.auth_failures_before_ban {
            self.sources.remove(key);
            self.ban(now_ms, key, BanReason::AuthFailures);
        }
    }

    /// A correct digest response: forgets the source's failures. The account's failure count
    /// is left to its window (and a lockout to its end): one success by the owner must not
    /// hand a distributed guesser a fresh budget.
    pub fn auth_succeeded(&mut self, now_ms: u64, source: IpAddr, username: &str) {
        let _ = (now_ms, username);
        if let Some(state) = self.sources.get_mut(source_key(source)) {
            state.auth_failures = 0;
        }
    }

    /// Whether `username` is locked out. The caller then answers exactly as for a wrong
    /// password (same status, same headers, a fresh challenge) without checking it.
    pub fn account_locked(&self, now_ms: u64, username: &str) -> bool {
        self.lockouts.is_locked(now_ms, username)
    }

    /// Applies a ban decided by another replica or loaded from the store.
    pub fn apply_ban(&mut self, now_ms: u64, ban: &proto::v1::Ban) -> BanOutcome {
        let Ok(address) = ban.address.parse::<IpAddr>() else {
            return BanOutcome::InvalidAddress;
        };
        if self.is_trusted(address) {
            return BanOutcome::Trusted;
        }
        if ban.until_unix_ms <= now_ms {
            return BanOutcome::Expired;
        }
        let key = source_key(address);
        if !self.bans.insert(now_ms, key, ban.until_unix_ms) {
            return BanOutcome::AlreadyBanned;
        }
        self.sources.remove(key);
        self.stats.bans_applied += 1;
        BanOutcome::Applied
    }

    /// The next ban decided here, to publish (with `edge_id` empty: the publisher fills it).
    pub fn poll_new_ban(&mut self) -> Option<proto::v1::Ban> {
        self.pending_bans.pop_front()
    }

    /// Whether `source` is banned at `now_ms` (never, for a trusted source).
    pub fn is_banned(&self, now_ms: u64, source: IpAddr) -> bool {
        !self.is_trusted(source) && self.bans.is_banned(now_ms, source_key(source))
    }

    /// Forgets ended bans, ended lockouts and sources back to a fresh state.
    pub fn purge(&mut self, now_ms: u64) {
        self.bans.purge(now_ms);
        self.sources.purge(now_ms);
        self.lockouts.purge(now_ms);
    }

    pub fn stats(&self) -> ProtectionStats {
        ProtectionStats {
            tracked_sources: self.sources.len(),
            bans_held: self.bans.len(),
            tracked_accounts: self.lockouts.len(),
            ..self.stats
        }
    }

    fn ban(&mut self, now_ms: u64, key: IpAddr, reason: BanReason) {
        let until_unix_ms = now_ms.saturating_add(self.ban_ms);
        if !self.bans.insert(now_ms, key, until_unix_ms) {
            return;
        }
        self.stats.bans_issued += 1;
        if self.pending_bans.len() >= MAX_PENDING_BANS {
            // Nobody drains the queue: keep the newest, the oldest will have ended first.
            self.pending_bans.pop_front();
            self.stats.bans_not_published += 1;
        }
        self.pending_bans.push_back(proto::v1::Ban {
            address: key.to_string(),
            until_unix_ms,
            reason: reason.as_str().to_owned(),
            edge_id: String::new(),
        });
    }
}

#[cfg(test)]
mod tests;
