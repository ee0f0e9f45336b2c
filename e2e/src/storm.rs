//! The registration storm of issue 8: every phone of the city re-registering at once when a
//! datacenter returns. [`apply_storm`] is the fault (dc-a lost, brought back, then the storm at
//! its edge; [`prepare`] then [`Storm::after_dc_a_returns`] in two steps); [`storm`] is the
//! storm alone on a healthy harness; [`drive`] is the load generator itself, run inside
//! `cq-site-1` by `cq-e2e storm`.
//!
//! The storm phones are users of the directory (`cq-e2e seed-storm`, i.e.
//! `test_phone::directory::add_storm_phones`: devices `s20000`, `s20001`, … on site S-2), apart
//! from the fleet's, so both are counted separately. Each is a real registering phone: its own
//! UDP socket, REGISTER, the 401 challenge answered with digest, retransmissions on RFC 3261's
//! timers (500 ms doubling to 4 s, given up after 32 s), and retries after a refusal or a
//! timeout (after `Retry-After` for a 503, else a backoff with jitter), until a deadline. A
//! phone refused and then registered on a retry is not lost; one never registered by the
//! deadline is.
//!
//! Why a Rust driver rather than SIPp (`sip-tester` 3.6.1, what the repo's other registration
//! scenarios use): the harness's edges challenge with SHA-256 and MD5 (the edge's default, and
//! what a city of current phones gets), and SIPp fails on such a challenge ("authentication must
//! use MD5", whichever order the two come in) instead of picking MD5; it also sends everything
//! from one address, which the edge's flood protection rightly bans (100 requests/s and a burst
//! of 200 per source), and the ban, shared with every edge, would then cut the fleet off too.
//!
//! Sources: a real storm comes from the city's 300 sites, each behind its own address. The
//! storm phones are spread over extra addresses of `cq-site-1` (10.77.0.100 and up, at most
//! [`SOURCE_MAX`]), [`PHONES_PER_SOURCE`] phones each, so no source exceeds what a site's
//! phones send; the fleet keeps the namespace's own address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sip_core::digest::{ClientSecret, answer};
use sip_msg::{HeaderName, Method, Response, SipMessage};
use tokio::net::UdpSocket;

use crate::Harness;
use crate::netns::{DC_A, DC_B, SITE_1};
use crate::process::ProcessSpec;

/// The storm's size for `make e2e-ha`: the city's 6,000 handsets. Measured on the 2-vCPU
/// machine (debug build, everything on two cores): at once on a healthy harness, 1,000 phones
/// registered in 0.4 s, 3,000 in 1.7 s, 6,000 in 3.0 s; 6,000 after dc-a's return under the
/// fleet in 4.9–6.1 s over four runs, none lost or refused.
pub const CITY_PHONES: u32 = 6_000;
/// The first extra source address of the storm phones in `cq-site-1`.
pub const SOURCE_FIRST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
/// At most this many extra addresses (10.77.0.100–10.77.0.249: the /24 the harness uses).
pub const SOURCE_MAX: u32 = 150;
/// Phones behind one source address: 6,000 handsets on 300 sites.
pub const PHONES_PER_SOURCE: u32 = 20;
/// How long the storm phones keep trying before the ones still unregistered count as lost.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How long dc-a stays down in [`apply_storm`] (the fleet moves away within about 1.5 s).
pub const DOWN_FOR: Duration = Duration::from_secs(8);
/// The registration expiry the storm phones ask (their bindings outlive the verification).
const EXPIRES: u32 = 3600;
/// Bound on seeding the storm phones (a hundred etcd transactions for 6,000 phones).
const SEED_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for a restarted member to be healthy again.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two looks while waiting (given to the caller's `watch`).
const SLICE: Duration = Duration::from_millis(500);

/// What the storm driver saw (`cq-e2e storm` prints it as one JSON line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormReport {
    pub phones: u32,
    /// Source addresses the phones were spread over.
    pub sources: u32,
    pub registered: u32,
    /// Phones refused (or unanswered) at least once that registered on a retry: not lost.
    pub registered_on_retry: u32,
    /// Phones still unregistered at the deadline: lost.
    pub never_registered: u32,
    /// The first few of them.
    pub never_registered_sample: Vec<String>,
    /// From the first REGISTER sent until the last phone's 200 (every phone's, when none was
    /// lost), and the median, 90th and 99th percentile phone.
    pub last_registered_ms: Option<u64>,
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    /// Final responses other than 200, by status, leaving out the challenge every phone gets
    /// first (a 401 answering credentials is counted); 408 is a REGISTER left unanswered for
    /// 32 s (Timer F) or until the deadline.
    pub statuses: BTreeMap<u16, u32>,
    /// REGISTER transactions started, and datagrams sent again within them.
    pub transactions: u64,
    pub retransmissions: u64,
    pub deadline_ms: u64,
}

impl StormReport {
    /// From the first REGISTER until every phone was registered; `None` when one never was.
    pub fn time_to_all(&self) -> Option<Duration> {
        if self.never_registered > 0 {
            return None;
        }
        self.last_registered_ms.map(Duration::from_millis)
    }

    /// Registrations completed per second over [`StormReport::time_to_all`].
    pub fn rate(&self) -> Option<f64> {
        let all = self.time_to_all()?.as_secs_f64();
        (all > 0.0).then(|| f64::from(self.registered) / all)
    }
}

/// The storm phones' live bindings in etcd (`cq-e2e bindings --storm` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingCount {
    pub phones: u32,
    /// Phones without a live binding, and with more than one.
    pub missing: usize,
    pub duplicated: usize,
    /// The first few of each.
    pub missing_sample: Vec<String>,
    pub duplicated_sample: Vec<String>,
}

/// What a storm did: the driver's report and the bindings etcd holds afterwards.
#[derive(Debug, Clone)]
pub struct StormResult {
    /// The edge the storm was fired at.
    pub target: SocketAddrV4,
    pub report: StormReport,
    /// The storm phones' bindings in etcd afterwards.
    pub bindings: BindingCount,
}

impl StormResult {
    /// Every storm phone registered, each with exactly one live binding.
    pub fn passed(&self) -> bool {
        self.report.never_registered == 0
            && self.report.registered == self.report.phones
            && self.bindings.missing == 0
            && self.bindings.duplicated == 0
    }

    /// One line for a report.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let ms =
            |v: Option<u64>| v.map_or("—".to_owned(), |v| format!("{:.1} s", v as f64 / 1e3));
        format!(
            "storm of {} phones from {} addresses at {}: {} registered ({} on a retry), {} never; \
             all registered after {} (median {}, p99 {}{}); responses other than 200: {:?}; \
             {} transactions, {} retransmissions; bindings: {} missing, {} duplicated",
            r.phones,
            r.sources,
            self.target,
            r.registered,
            r.registered_on_retry,
            r.never_registered,
            ms(r.time_to_all().map(|d| d.as_millis() as u64)),
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.rate().map_or(String::new(), |v| format!(", {v:.0}/s")),
            r.statuses,
            r.transactions,
            r.retransmissions,
            self.bindings.missing,
            self.bindings.duplicated,
        )
    }
}

// ----- The fault ----------------------------------------------------------------------------

/// dc-a lost and back, then the storm ([`Storm::after_dc_a_returns`]), its phones seeded first
/// ([`prepare`]). Seeding thousands of phones loads the machine for a few seconds (the
/// directory's watchers get every entry): a runner measuring from the fault should call
/// [`prepare`] before its fleet starts, then [`Storm::after_dc_a_returns`].
pub fn apply_storm(
    harness: &mut Harness,
    storm_phones: u32,
    watch: &mut dyn FnMut(&Harness, Duration),
) -> Result<(String, StormResult)> {
    prepare(harness, storm_phones)?.after_dc_a_returns(harness, watch)
}

/// The storm alone on a healthy harness: seeds `phones` storm phones and fires them at
/// `datacenter`'s edge (`dc-a`) at once. `watch` as for [`Storm::after_dc_a_returns`].
pub fn storm(
    harness: &mut Harness,
    datacenter: &str,
    phones: u32,
    watch: &mut dyn FnMut(&Harness, Duration),
) -> Result<StormResult> {
    prepare(harness, phones)?.fire(harness, datacenter, watch)
}

/// Storm phones in the directory and their source addresses in `cq-site-1`, ready to fire.
#[derive(Debug, Clone)]
pub struct Storm {
    pub phones: u32,
    pub sources: Vec<Ipv4Addr>,
    /// How long seeding them took.
    pub seeded_in: Duration,
}

impl Storm {
    /// Kills every process of dc-a (its etcd and NATS members included), keeps it down
    /// [`DOWN_FOR`] (the fleet moves to dc-b, the failover too), brings it back (etcd
    /// rejoining with its kept data, NATS routed again, then its services and its failover
    /// controller, each ready), and fires the storm at dc-a's edge at once, while the fleet, if
    /// one runs, fails back to dc-a. `watch` is called with a pause whenever this waits (the
    /// caller notes failover states there, and must sleep the pause). Returns a note for the
    /// report and the figures.
    pub fn after_dc_a_returns(
        &self,
        harness: &mut Harness,
        watch: &mut dyn FnMut(&Harness, Duration),
    ) -> Result<(String, StormResult)> {
        let killed = harness.kill_location(DC_A);
        let lost = Instant::now();
        let mut failed_over = None;
        while lost.elapsed() < DOWN_FOR {
            watch(harness, SLICE);
            if failed_over.is_none()
                && harness
                    .failover_state(DC_B)
                    .is_ok_and(|s| s.is_some_and(|s| s.active == "dc-b"))
            {
                failed_over = Some(lost.elapsed());
            }
        }
        let down = lost.elapsed();
        let back = Instant::now();
        let restarted = bring_back(harness, DC_A, watch)?;
        let edge = harness.datacenter("dc-a")?.sip();
        harness.wait_sip_ok(SITE_1, edge, MEMBER_TIMEOUT)?;
        let back_after = back.elapsed();
        let result = self.fire(harness, "dc-a", watch)?;
        let note = format!(
            "killed in dc-a: {}; down {:.1} s (failover to dc-b seen after {}); brought back in \
             {:.1} s ({}); {}",
            killed.join(", "),
            down.as_secs_f64(),
            failed_over.map_or("—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            back_after.as_secs_f64(),
            restarted.join(", "),
            result.summary()
        );
        Ok((note, result))
    }

    /// Runs `cq-e2e storm` in `cq-site-1` against `datacenter`'s edge, waits for its report
    /// (its deadline plus a margin, then it is killed), and counts the storm phones' bindings.
    pub fn fire(
        &self,
        harness: &mut Harness,
        datacenter: &str,
        watch: &mut dyn FnMut(&Harness, Duration),
    ) -> Result<StormResult> {
        fire(harness, datacenter, self.phones, &self.sources, watch)
    }
}

/// Restarts every killed process of `namespace` in the order the harness started them (etcd,
/// NATS, then the services, then the failover controller), each ready before the next; a
/// restarted etcd member rejoins with its data directory and must be healthy, a NATS server
/// routed to both others. Returns the names, with how long each took.
fn bring_back(
    harness: &mut Harness,
    namespace: &str,
    watch: &mut dyn FnMut(&Harness, Duration),
) -> Result<Vec<String>> {
    let names: Vec<String> = harness
        .processes()
        .iter()
        .filter(|p| p.namespace() == namespace && p.pid().is_none())
        .map(|p| p.name().to_owned())
        .collect();
    let member = harness
        .members()
        .iter()
        .find(|m| m.namespace == namespace)
        .cloned();
    let mut done = Vec::new();
    for name in names {
        let started = Instant::now();
        harness.restart(&name)?;
        if let Some(member) = member.as_ref() {
            if name == member.etcd_process() {
                while !harness.etcd_healthy(namespace, member) {
                    if started.elapsed() > MEMBER_TIMEOUT {
                        bail!("{name} not healthy again within {MEMBER_TIMEOUT:?}");
                    }
                    watch(harness, Duration::from_millis(200));
                }
            } else if name == member.nats_process() {
                let peers = harness.members().len() - 1;
                while !harness
                    .nats_routes(namespace, member)
                    .is_ok_and(|r| r.len() >= peers)
                {
                    if started.elapsed() > MEMBER_TIMEOUT {
                        bail!("{name} not routed again within {MEMBER_TIMEOUT:?}");
                    }
                    watch(harness, Duration::from_millis(200));
                }
            }
        }
        done.push(format!("{name} {:.1} s", started.elapsed().as_secs_f64()));
    }
    Ok(done)
}

// ----- The storm, from the harness ----------------------------------------------------------

/// Seeds `phones` storm phones (`cq-e2e seed-storm`) and gives `cq-site-1` their source
/// addresses.
pub fn prepare(harness: &mut Harness, phones: u32) -> Result<Storm> {
    let started = Instant::now();
    let realm = harness.service_config().realm.clone();
    let etcd = harness.service_config().etcd.clone();
    let program = harness.binaries().calanque("cq-e2e")?;
    let args: Vec<String> = [
        "seed-storm",
        "--etcd",
        &etcd,
        "--realm",
        &realm,
        "--phones",
        &phones.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    crate::process::run_in(SITE_1, &program, &args, SEED_TIMEOUT)
        .context("seeding the storm phones")?;
    let seeded_in = started.elapsed();
    let sources = source_addresses(phones);
    add_addresses(SITE_1, &sources)?;
    Ok(Storm {
        phones,
        sources,
        seeded_in,
    })
}

/// The source addresses for `phones` storm phones: one per [`PHONES_PER_SOURCE`], at most
/// [`SOURCE_MAX`] (more phones per address beyond 3,000 phones).
pub fn source_addresses(phones: u32) -> Vec<Ipv4Addr> {
    let count = phones.div_ceil(PHONES_PER_SOURCE).clamp(1, SOURCE_MAX);
    let first = u32::from(SOURCE_FIRST);
    (0..count).map(|i| Ipv4Addr::from(first + i)).collect()
}

/// Adds `addresses` (/24) to `namespace`'s `eth0`, once (`replace` is idempotent), in one `ip`
/// run. The namespace's own address stays the primary one: what the fleet and the probes use.
fn add_addresses(namespace: &str, addresses: &[Ipv4Addr]) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["-n", namespace, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip -batch")?;
    {
        let mut stdin = child.stdin.take().context("ip's stdin")?;
        for address in addresses {
            writeln!(stdin, "addr replace {address}/24 dev eth0")?;
        }
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "adding {} addresses to {namespace}: {}",
            addresses.len(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn fire(
    harness: &mut Harness,
    datacenter: &str,
    phones: u32,
    sources: &[Ipv4Addr],
    watch: &mut dyn FnMut(&Harness, Duration),
) -> Result<StormResult> {
    let target = harness.datacenter(datacenter)?.sip();
    let program = harness.binaries().calanque("cq-e2e")?;
    let name = format!(
        "storm-{}",
        harness
            .processes()
            .iter()
            .filter(|p| p.name().starts_with("storm-"))
            .count()
            + 1
    );
    let sources: Vec<String> = sources.iter().map(Ipv4Addr::to_string).collect();
    let realm = harness.service_config().realm.clone();
    let mut spec = ProcessSpec::new(&name, SITE_1, program);
    spec.args = [
        "storm",
        "--server",
        &target.to_string(),
        "--realm",
        &realm,
        "--phones",
        &phones.to_string(),
        "--sources",
        &sources.join(","),
        "--deadline-s",
        &DEADLINE.as_secs().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let started = Instant::now();
    harness.spawn(spec)?;
    let bound = DEADLINE + Duration::from_secs(20);
    while harness.process(&name)?.is_running() {
        if started.elapsed() > bound {
            harness.kill(&name)?;
            bail!("the storm driver did not end within {bound:?}");
        }
        watch(harness, Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(harness.process(&name)?.log_path())
        .context("reading the storm driver's output")?;
    let report = log
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<StormReport>(line).ok())
        .with_context(|| {
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            format!("the storm driver printed no report; its log ends:\n{tail:?}")
        })?;
    let bindings = storm_bindings(harness, phones)?;
    Ok(StormResult {
        target,
        report,
        bindings,
    })
}

/// The storm phones' live bindings, from `cq-e2e bindings --storm` run where a quorum answers
/// (a member that just died may take the first request).
fn storm_bindings(harness: &Harness, phones: u32) -> Result<BindingCount> {
    let mut last_error = None;
    for (attempt, from) in [SITE_1, DC_B, SITE_1, DC_B].into_iter().enumerate() {
        if attempt > 0 {
            std::thread::sleep(SLICE);
        }
        let etcd: Vec<String> = harness
            .reachable_members(from)
            .iter()
            .map(|m| m.etcd_client_url())
            .collect();
        let args = [
            "bindings".to_owned(),
            "--etcd".to_owned(),
            etcd.join(","),
            "--realm".to_owned(),
            harness.service_config().realm.clone(),
            "--phones".to_owned(),
            phones.to_string(),
            "--storm".to_owned(),
        ];
        match harness.probe(from, &args) {
            Ok(json) => {
                let count: BindingCount = serde_json::from_str(json.trim())
                    .with_context(|| format!("cq-e2e bindings --storm printed {json:?}"))?;
                if count.phones != phones {
                    bail!("bindings of {} phones, not {phones}", count.phones);
                }
                return Ok(count);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no etcd member reachable")))
}

// ----- The driver, inside the namespace ------------------------------------------------------

/// What `cq-e2e storm` runs.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// The edge (UDP).
    pub server: SocketAddr,
    pub realm: String,
    /// (SIP username, password) of each phone.
    pub phones: Vec<(String, String)>,
    /// The addresses the phones bind, phone `i` on `sources[i % len]`.
    pub sources: Vec<IpAddr>,
    /// Phones started per second; 0: all at once.
    pub rate: u32,
    /// Phones still unregistered this long after the start are lost.
    pub deadline: Duration,
}

/// RFC 3261's T1, T2 and Timer F (64 × T1) for a non-INVITE transaction over UDP.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_F: Duration = Duration::from_secs(32);
/// A retry after a failure waits 1 s doubling up to this, less up to half at random (RFC 5626
/// §4.5's shape, shortened to fit the deadline): retries spread instead of coming back as a
/// second storm.
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// Challenges in a row answering credentials before the phone backs off.
const MAX_CHALLENGES: u32 = 3;

/// One phone's storm.
#[derive(Debug, Default)]
struct PhoneOutcome {
    user: String,
    registered_ms: Option<u64>,
    /// Statuses of refusals (408: no answer).
    refusals: Vec<u16>,
    transactions: u64,
    retransmissions: u64,
}

/// Binds every phone's socket, then starts the phones at once (or at `config.rate`) and waits
/// for each to register or give up at the deadline.
pub async fn drive(config: StormConfig) -> Result<StormReport> {
    if config.sources.is_empty() {
        bail!("no source address");
    }
    let mut sockets = Vec::with_capacity(config.phones.len());
    for index in 0..config.phones.len() {
        let ip = config.sources[index % config.sources.len()];
        let socket = UdpSocket::bind((ip, 0))
            .await
            .with_context(|| format!("binding a storm phone's socket on {ip}"))?;
        sockets.push(socket);
    }
    let config = Arc::new(config);
    let start = tokio::time::Instant::now();
    let deadline = start + config.deadline;
    let mut tasks = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        let config = config.clone();
        if config.rate > 0 {
            let at = start + Duration::from_secs_f64(index as f64 / f64::from(config.rate));
            tokio::time::sleep_until(at).await;
        }
        tasks.push(tokio::spawn(async move {
            let mut phone = StormPhone {
                config,
                index,
                socket,
                start,
                deadline,
                outcome: PhoneOutcome::default(),
            };
            phone.register().await;
            phone.outcome
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("a storm phone's task")?);
    }
    Ok(report(&config, &outcomes))
}

fn report(config: &StormConfig, outcomes: &[PhoneOutcome]) -> StormReport {
    let mut times: Vec<u64> = outcomes.iter().filter_map(|o| o.registered_ms).collect();
    times.sort_unstable();
    let percentile = |p: usize| -> Option<u64> {
        let last = times.len().checked_sub(1)?;
        times.get(last * p / 100).copied()
    };
    let mut statuses = BTreeMap::new();
    for status in outcomes.iter().flat_map(|o| o.refusals.iter()) {
        *statuses.entry(*status).or_insert(0) += 1;
    }
    let never: Vec<&PhoneOutcome> = outcomes
        .iter()
        .filter(|o| o.registered_ms.is_none())
        .collect();
    StormReport {
        phones: outcomes.len() as u32,
        sources: config.sources.len() as u32,
        registered: times.len() as u32,
        registered_on_retry: outcomes
            .iter()
            .filter(|o| o.registered_ms.is_some() && !o.refusals.is_empty())
            .count() as u32,
        never_registered: never.len() as u32,
        never_registered_sample: never.iter().take(20).map(|o| o.user.clone()).collect(),
        last_registered_ms: times.last().copied(),
        p50_ms: percentile(50),
        p90_ms: percentile(90),
        p99_ms: percentile(99),
        statuses,
        transactions: outcomes.iter().map(|o| o.transactions).sum(),
        retransmissions: outcomes.iter().map(|o| o.retransmissions).sum(),
        deadline_ms: config.deadline.as_millis() as u64,
    }
}

/// One storm phone: its socket (its own port, as each phone behind a site's NAT gets).
struct StormPhone {
    config: Arc<StormConfig>,
    index: usize,
    socket: UdpSocket,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    outcome: PhoneOutcome,
}

/// How a REGISTER transaction ended.
enum Answer {
    Final(Response),
    /// No final answer within Timer F (or before the deadline).
    Silence,
}

impl StormPhone {
    fn user(&self) -> &str {
        &self.config.phones[self.index].0
    }

    /// Registers, retrying after refusals and silences, until a 200 or the deadline.
    async fn register(&mut self) {
        self.outcome.user = self.user().to_owned();
        let mut cseq = 0;
        let mut failures = 0;
        let mut credentials: Option<String> = None;
        let mut challenges = 0;
        while tokio::time::Instant::now() < self.deadline {
            cseq += 1;
            let answered = self.transaction(cseq, credentials.as_deref()).await;
            let pause = match answered {
                Answer::Silence => {
                    self.outcome.refusals.push(408);
                    failures += 1;
                    self.backoff(failures)
                }
                Answer::Final(response) => match response.status.as_u16() {
                    200..=299 => {
                        self.outcome.registered_ms = Some(self.start.elapsed().as_millis() as u64);
                        return;
                    }
                    status @ (401 | 407) => {
                        if credentials.is_some() {
                            self.outcome.refusals.push(status);
                            challenges += 1;
                        }
                        credentials = self.credentials(&response);
                        if credentials.is_some() && challenges < MAX_CHALLENGES {
                            continue;
                        }
                        credentials = None;
                        challenges = 0;
                        failures += 1;
                        self.backoff(failures)
                    }
                    status => {
                        self.outcome.refusals.push(status);
                        credentials = None;
                        challenges = 0;
                        failures += 1;
                        let jitter = self.jitter(failures, Duration::from_secs(1));
                        match retry_after(&response) {
                            Some(after) if status == 503 => after + jitter,
                            _ => self.backoff(failures),
                        }
                    }
                },
            };
            tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(self.deadline))
                .await;
        }
    }

    /// 1 s doubling up to [`MAX_BACKOFF`], less up to half of it.
    fn backoff(&self, failures: u32) -> Duration {
        let full = (Duration::from_secs(1) * 2u32.saturating_pow(failures.saturating_sub(1)))
            .min(MAX_BACKOFF);
        full - self.jitter(failures, full / 2)
    }

    /// A spread in `0..up_to` that differs between phones and attempts (no shared random
    /// source needed: the index and the attempt mix well enough to desynchronise retries).
    fn jitter(&self, attempt: u32, up_to: Duration) -> Duration {
        let mix = (self.index as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9));
        let fraction = (mix >> 40) as f64 / f64::from(1u32 << 24);
        up_to.mul_f64(fraction)
    }

    /// The Authorization answering a 401's challenges (SHA-256 preferred), `None` when none
    /// can be answered.
    fn credentials(&self, challenge: &Response) -> Option<String> {
        let challenges = challenge.headers.www_authenticate().ok()?;
        let (user, password) = &self.config.phones[self.index];
        let cnonce = format!("{:08x}{:04x}", self.index, self.outcome.transactions);
        answer(
            &challenges,
            user,
            ClientSecret::Password(password),
            &Method::Register,
            &format!("sip:{}", self.config.realm),
            &cnonce,
            1,
        )
        .ok()
        .map(|credentials| format!("Authorization: {credentials}\r\n"))
    }

    fn register_text(&self, cseq: u32, credentials: Option<&str>) -> Result<String> {
        let local = self.socket.local_addr()?;
        let user = self.user();
        let realm = &self.config.realm;
        Ok(format!(
            "REGISTER sip:{realm} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-storm-{user}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{realm}>;tag=s{user}\r\n\
             To: <sip:{user}@{realm}>\r\nCall-ID: storm-{user}-{local}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n{auth}\
             Expires: {EXPIRES}\r\nUser-Agent: calanque-e2e-storm\r\nContent-Length: 0\r\n\r\n",
            auth = credentials.unwrap_or_default(),
        ))
    }

    /// One REGISTER transaction: sent, retransmitted after T1 doubling up to T2, until a final
    /// answer with this CSeq, Timer F or the deadline.
    async fn transaction(&mut self, cseq: u32, credentials: Option<&str>) -> Answer {
        let Ok(text) = self.register_text(cseq, credentials) else {
            return Answer::Silence;
        };
        self.outcome.transactions += 1;
        let server = self.config.server;
        let started = tokio::time::Instant::now();
        let give_up = (started + TIMER_F).min(self.deadline);
        let mut interval = T1;
        let mut resend = started + interval;
        // A send error (a full socket buffer) is a datagram lost: the retransmission covers it.
        let _ = self.socket.send_to(text.as_bytes(), server).await;
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let Ok((n, _)) = received else { continue };
                    if let Ok(SipMessage::Response(response)) = sip_msg::parse_datagram(&buf[..n])
                        && response.status.as_u16() >= 200
                        && response.headers.cseq().ok().flatten().is_some_and(|c| c.seq == cseq)
                    {
                        return Answer::Final(response);
                    }
                }
                _ = tokio::time::sleep_until(resend.min(give_up)) => {
                    let now = tokio::time::Instant::now();
                    if now >= give_up {
                        return Answer::Silence;
                    }
                    let _ = self.socket.send_to(text.as_bytes(), server).await;
                    self.outcome.retransmissions += 1;
                    interval = (interval * 2).min(T2);
                    resend = now + interval;
                }
            }
        }
    }
}

/// The seconds of a `Retry-After` header (`120`, `120;duration=60`, `120 (comment)`).
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers.get(&HeaderName::RetryAfter)?;
    let digits: String = value
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn phones_are_spread_over_at_most_150_addresses_of_the_site() {
        assert_eq!(source_addresses(1), [SOURCE_FIRST]);
        assert_eq!(source_addresses(500).len(), 25);
        let all = source_addresses(6_000);
        assert_eq!(all.len(), SOURCE_MAX as usize);
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 77, 0, 249)));
    }

    #[test]
    fn the_report_counts_lost_phones_and_refusals_and_reads_back() {
        let config = StormConfig {
            server: "10.77.0.1:5070".parse().unwrap(),
            realm: "calanque.test".into(),
            phones: Vec::new(),
            sources: vec!["10.77.0.100".parse().unwrap()],
            rate: 0,
            deadline: DEADLINE,
        };
        let phone = |user: &str, registered_ms: Option<u64>, refusals: Vec<u16>| PhoneOutcome {
            user: user.into(),
            registered_ms,
            refusals,
            transactions: 2,
            retransmissions: 1,
        };
        let outcomes = [
            phone("s20000", Some(100), vec![]),
            phone("s20001", Some(3_000), vec![503]),
            phone("s20002", None, vec![408, 408]),
        ];
        let report = report(&config, &outcomes);
        assert_eq!(report.registered, 2);
        assert_eq!(report.registered_on_retry, 1);
        assert_eq!(report.never_registered_sample, ["s20002"]);
        assert_eq!(report.statuses, BTreeMap::from([(408, 2), (503, 1)]));
        assert_eq!(report.last_registered_ms, Some(3_000));
        assert_eq!(report.time_to_all(), None, "a phone was lost");
        let line = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<StormReport>(&line).unwrap(), report);
    }

    #[test]
    fn retry_after_reads_the_seconds() {
        let text = "SIP/2.0 503 Service Unavailable\r\n\
                    Via: SIP/2.0/UDP 10.77.0.100:5000;branch=z9hG4bK-1\r\n\
                    From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
                    Retry-After: 5;duration=60\r\nContent-Length: 0\r\n\r\n";
        let Ok(SipMessage::Response(response)) = sip_msg::parse_datagram(text.as_bytes()) else {
            panic!("not a response")
        };
        assert_eq!(retry_after(&response), Some(Duration::from_secs(5)));
    }
}
