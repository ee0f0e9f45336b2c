//! Slow links between two locations (issue 8): the kernel here has neither netem nor NFQUEUE,
//! so `cq-delay` (`e2e/src/bin/cq-delay.rs`) relays the packets in user space. It opens a TUN
//! device in each of the two namespaces (`cq-to-dc-b` in dc-a, `cq-to-dc-a` in dc-b), and a
//! /32 route to the peer through that device in each makes only this pair's traffic take the
//! relay: the addresses stay the same, so established connections simply take the new path,
//! and everyone else (the witness, the site) keeps the direct one.
//!
//! [`SlowLink`] starts the relay through the harness (it runs in `cq-core`, the wire itself,
//! and joins the two namespaces to open its devices), adds the routes, and removes them and
//! stops the relay. The devices are the relay's own (not persistent): they vanish when it
//! exits or is killed, and their routes with them, so nothing outlives it, and nothing is ever
//! created in the host's namespace.
//!
//! The pacing ([`Pacer`]) is a pure function of the arrival times, and the counters line
//! ([`RelayCounters`]) is the relay's output read back here: both are shared with the binary.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Harness;
use crate::netns::{CORE, DC_A, DC_B, PREFIX, ip, ip_output};
use crate::process::ProcessSpec;

/// What the relay prints on stdout once both devices are up.
pub const READY_LINE: &str = "cq-delay: ready";
/// What starts the relay's counters line (on exit, SIGTERM included).
pub const COUNTERS_PREFIX: &str = "cq-delay: counters";
/// Bound on the relay opening its devices.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a link misbehaves, the same both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkShape {
    /// Added to every packet, each way.
    pub one_way: Duration,
    /// Each packet's delay is drawn uniformly in `one_way ± jitter` (never reordering: see
    /// [`Pacer`]).
    pub jitter: Duration,
    /// Packets lost, per thousand, each way (drawn from a seeded generator: a run is
    /// repeatable given the same traffic).
    pub loss_per_mille: u16,
}

impl LinkShape {
    /// A constant one-way delay, no jitter, no loss.
    pub fn delay(one_way: Duration) -> LinkShape {
        LinkShape {
            one_way,
            jitter: Duration::ZERO,
            loss_per_mille: 0,
        }
    }

    pub fn jitter(mut self, jitter: Duration) -> LinkShape {
        self.jitter = jitter;
        self
    }

    pub fn loss_per_mille(mut self, loss: u16) -> LinkShape {
        self.loss_per_mille = loss.min(1000);
        self
    }

    /// The longest a packet can wait in the relay (its delay at most; in order behind a slower
    /// one at worst as long again, which this bound ignores: it is for draining).
    pub fn max_delay(&self) -> Duration {
        self.one_way + self.jitter
    }
}

/// Decides when each packet of one direction leaves, given when it arrived.
///
/// Jitter never reorders a direction: a packet drawn to leave before the one ahead of it waits
/// for it. Real paths between two datacenters reorder rarely (routers hash a flow onto one
/// path and queue it in order), while independent per-packet delays, as netem draws them
/// without a rate, would reorder most packets closer together than the jitter and make TCP
/// retransmit spuriously: a test of failover under slowness, not of reordering.
#[derive(Debug, Clone)]
pub struct Pacer {
    shape: LinkShape,
    rng: u64,
    last_release: Option<Instant>,
}

impl Pacer {
    pub fn new(shape: LinkShape, seed: u64) -> Pacer {
        Pacer {
            shape,
            rng: seed,
            last_release: None,
        }
    }

    /// When a packet arriving at `now` leaves, or `None` when the configured loss takes it.
    pub fn admit(&mut self, now: Instant) -> Option<Instant> {
        if self.shape.loss_per_mille > 0
            && self.next_random() % 1000 < u64::from(self.shape.loss_per_mille)
        {
            return None;
        }
        let delay = self.draw_delay();
        let release = now + delay;
        // In order behind the packet ahead (see the type's comment).
        let release = self.last_release.map_or(release, |last| release.max(last));
        self.last_release = Some(release);
        Some(release)
    }

    /// `one_way ± jitter`, uniformly, in microseconds.
    fn draw_delay(&mut self) -> Duration {
        let jitter = self.shape.jitter.as_micros() as u64;
        if jitter == 0 {
            return self.shape.one_way;
        }
        let base = self.shape.one_way.as_micros() as u64;
        let offset = self.next_random() % (2 * jitter + 1);
        Duration::from_micros((base + offset).saturating_sub(jitter))
    }

    /// splitmix64: small, seedable, good enough to spread losses and delays.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What the relay did, as its counters line says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Packets delivered from A to B, and from B to A.
    pub a_to_b: u64,
    pub b_to_a: u64,
    /// Packets dropped because a direction's queue was full (or the peer device refused them).
    pub dropped: u64,
    /// Packets taken by the configured loss.
    pub lost: u64,
    /// Packets read that were not IPv4 for the peer (none with the routes this module adds).
    pub ignored: u64,
}

impl RelayCounters {
    /// Packets delivered both ways.
    pub fn relayed(&self) -> u64 {
        self.a_to_b + self.b_to_a
    }

    /// The line the relay prints (parsed back by [`RelayCounters::parse`]).
    pub fn to_line(&self) -> String {
        format!(
            "{COUNTERS_PREFIX} a_to_b={} b_to_a={} dropped={} lost={} ignored={}",
            self.a_to_b, self.b_to_a, self.dropped, self.lost, self.ignored
        )
    }

    /// The last counters line in `output` (a relay's log), if any.
    pub fn parse(output: &str) -> Option<RelayCounters> {
        let line = output
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(COUNTERS_PREFIX))?;
        let mut counters = RelayCounters::default();
        for field in line.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "a_to_b" => counters.a_to_b = value,
                "b_to_a" => counters.b_to_a = value,
                "dropped" => counters.dropped = value,
                "lost" => counters.lost = value,
                "ignored" => counters.ignored = value,
                // A newer relay's counter: the known ones still count.
                _ => {}
            }
        }
        Some(counters)
    }
}

/// The TUN device in one namespace that leads to `peer` (`cq-to-dc-b` in dc-a): named after the
/// peer so that one location can have slow links to several others.
pub fn tun_name(peer: &str) -> String {
    format!("{PREFIX}to-{}", peer.trim_start_matches(PREFIX))
}

/// One slow link between two locations, relayed by `cq-delay` until [`SlowLink::stop`]. Dropped
/// without `stop`, the link stays slow until the harness goes (its teardown kills the relay,
/// whose devices and routes vanish with it).
#[derive(Debug)]
pub struct SlowLink {
    /// The relay's process name in the harness (`delay-dc-a-dc-b-1`).
    process: String,
    a: End,
    b: End,
    shape: LinkShape,
}

/// One side of the link: its namespace, address, and the device leading to the other side.
#[derive(Debug, Clone)]
struct End {
    namespace: String,
    address: Ipv4Addr,
    tun: String,
}

impl SlowLink {
    /// Starts the relay between `a` and `b` (namespaces of the harness's topology), waits until
    /// its devices are up, then routes each side's traffic to the other through them.
    pub fn start(harness: &mut Harness, a: &str, b: &str, shape: LinkShape) -> Result<SlowLink> {
        if a == b {
            bail!("a slow link needs two locations, got {a} twice");
        }
        let topology = harness.topology();
        let end_a = End {
            namespace: a.to_owned(),
            address: topology.address(a)?,
            tun: tun_name(b),
        };
        let end_b = End {
            namespace: b.to_owned(),
            address: topology.address(b)?,
            tun: tun_name(a),
        };
        // Names are unique in a harness and a stopped process stays known: a link made slow
        // again gets a new name (and log).
        let stem = format!(
            "delay-{}-{}",
            a.trim_start_matches(PREFIX),
            b.trim_start_matches(PREFIX)
        );
        let process = (1..)
            .map(|n| format!("{stem}-{n}"))
            .find(|name| harness.processes().iter().all(|p| p.name() != name))
            .context("no free process name")?;
        let program = harness.binaries().calanque("cq-delay")?;
        let spec = ProcessSpec::new(&process, CORE, program)
            .args(relay_args(&end_a, &end_b, &shape))
            .ready_line(READY_LINE);
        let link = SlowLink {
            process,
            a: end_a,
            b: end_b,
            shape,
        };
        let ready = harness
            .spawn(spec)
            .and_then(|relay| relay.wait_ready(READY_TIMEOUT));
        if let Err(error) = ready {
            // Dead already, or stuck: either way not left running.
            let _ = harness.kill(&link.process);
            return Err(error.context(format!("starting the relay {}", link.process)));
        }
        if let Err(error) = link.route() {
            let _ = link.unroute();
            let _ = harness.kill(&link.process);
            return Err(error);
        }
        tracing::info!(a, b, ?shape, relay = %link.process, "link slowed");
        Ok(link)
    }

    /// The relay's process name in the harness (its log is `<name>.log` in the run directory).
    pub fn process_name(&self) -> &str {
        &self.process
    }

    pub fn shape(&self) -> LinkShape {
        self.shape
    }

    /// Restores the direct path (routes removed first, so nothing new enters the relay), then
    /// stops the relay (SIGTERM: it delivers what it still holds, prints its counters and
    /// exits, its devices going with it). Returns its counters.
    pub fn stop(self, harness: &mut Harness) -> Result<RelayCounters> {
        let unrouted = self.unroute();
        let grace = self.shape.max_delay() + Duration::from_secs(5);
        let relay = harness.process(&self.process)?;
        // A relay that died early took its devices and routes with it: the link was direct
        // again from then on, and the scenario did not measure what it says.
        let died = !relay.is_running();
        let exited = relay.stop(grace);
        if died {
            bail!(
                "the relay {} exited before it was stopped; log {}:\n{}",
                self.process,
                relay.log_path().display(),
                relay.log_tail(20)
            );
        }
        let output = relay.current_output()?;
        unrouted?;
        if exited.is_none() {
            bail!(
                "the relay {} ignored SIGTERM (killed); log {}",
                self.process,
                relay.log_path().display()
            );
        }
        let counters = RelayCounters::parse(&output).with_context(|| {
            format!(
                "the relay {} printed no counters; log {}",
                self.process,
                relay.log_path().display()
            )
        })?;
        // The devices are the relay's own: gone with it. Checked, since a device left behind
        // would keep its route and the link slow (or dead).
        for end in [&self.a, &self.b] {
            if link_exists(&end.namespace, &end.tun) {
                bail!(
                    "{} still exists in {} after the relay exited",
                    end.tun,
                    end.namespace
                );
            }
        }
        tracing::info!(a = %self.a.namespace, b = %self.b.namespace, ?counters, "link restored");
        Ok(counters)
    }

    /// Each side's peer through its device, with its own address as source (the device has
    /// none: without `src` the kernel would still pick it, but the route says it).
    fn route(&self) -> Result<()> {
        // Packets from the peer now arrive on the device. The mirror route makes the device the
        // reverse path too, so even strict reverse-path filtering accepts them (the relay also
        // lifts the device's own filter, for the moment between the two routes).
        for (end, peer) in [(&self.a, &self.b), (&self.b, &self.a)] {
            ip(&[
                "-n",
                &end.namespace,
                "route",
                "add",
                &format!("{}/32", peer.address),
                "dev",
                &end.tun,
                "src",
                &end.address.to_string(),
            ])?;
        }
        Ok(())
    }

    /// Removes both routes (those still there); the /24 on `eth0` carries the pair again.
    fn unroute(&self) -> Result<()> {
        let mut failures = Vec::new();
        for (end, peer) in [(&self.a, &self.b), (&self.b, &self.a)] {
            if !link_exists(&end.namespace, &end.tun) {
                continue;
            }
            let route = format!("{}/32", peer.address);
            let listed = ip_output(&["-n", &end.namespace, "route", "show", &route])?;
            if listed.trim().is_empty() {
                continue;
            }
            if let Err(error) = ip(&[
                "-n",
                &end.namespace,
                "route",
                "del",
                &route,
                "dev",
                &end.tun,
            ]) {
                failures.push(format!("{error:#}"));
            }
        }
        if !failures.is_empty() {
            bail!("removing the slow link's routes: {}", failures.join("; "));
        }
        Ok(())
    }
}

fn relay_args(a: &End, b: &End, shape: &LinkShape) -> Vec<String> {
    [
        ("--ns-a", a.namespace.clone()),
        ("--addr-a", a.address.to_string()),
        ("--tun-a", a.tun.clone()),
        ("--ns-b", b.namespace.clone()),
        ("--addr-b", b.address.to_string()),
        ("--tun-b", b.tun.clone()),
        ("--delay-ms", shape.one_way.as_millis().to_string()),
        ("--jitter-ms", shape.jitter.as_millis().to_string()),
        ("--loss-per-mille", shape.loss_per_mille.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// The slow-link scenario's figures: dc-a ↔ dc-b, 150 ms ± 20 ms one way, for 15 s.
pub const SCENARIO_SHAPE: LinkShape = LinkShape {
    one_way: Duration::from_millis(150),
    jitter: Duration::from_millis(20),
    loss_per_mille: 0,
};
pub const SCENARIO_SPAN: Duration = Duration::from_secs(15);

/// Makes `a` ↔ `b` slow with `shape`, calls `watch(harness, span)` (which returns after about
/// `span`: the runner notes the failover states meanwhile), then restores the link. The relay's
/// counters.
pub fn slow_for(
    harness: &mut Harness,
    a: &str,
    b: &str,
    shape: LinkShape,
    span: Duration,
    mut watch: impl FnMut(&Harness, Duration),
) -> Result<RelayCounters> {
    let link = SlowLink::start(harness, a, b, shape)?;
    watch(harness, span);
    link.stop(harness)
}

/// The slow-link failure scenario for the runner: dc-a ↔ dc-b delayed [`SCENARIO_SHAPE`] for
/// [`SCENARIO_SPAN`] while `watch(harness, span)` runs (it must return after about `span`), then
/// restored. Returns the report's note: "dc-a↔dc-b delayed 150 ms ±20 ms one way for 15 s:
/// N packets relayed, M dropped".
pub fn apply_slow_link_scenario(
    harness: &mut Harness,
    watch: impl FnMut(&Harness, Duration),
) -> Result<String> {
    let shape = SCENARIO_SHAPE;
    let counters = slow_for(harness, DC_A, DC_B, shape, SCENARIO_SPAN, watch)?;
    Ok(format!(
        "dc-a↔dc-b delayed {} ms ±{} ms one way for {} s: {} packets relayed, {} dropped",
        shape.one_way.as_millis(),
        shape.jitter.as_millis(),
        SCENARIO_SPAN.as_secs(),
        counters.relayed(),
        counters.dropped + counters.lost
    ))
}

/// True when `device` exists in `namespace`.
fn link_exists(namespace: &str, device: &str) -> bool {
    ip_output(&["-n", namespace, "link", "show", "dev", device]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_constant_delay_is_added_to_every_packet() {
        let mut pacer = Pacer::new(LinkShape::delay(100 * MS), 1);
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + i * 7 * MS;
            assert_eq!(pacer.admit(now), Some(now + 100 * MS));
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_reorders() {
        let shape = LinkShape::delay(150 * MS).jitter(20 * MS);
        let mut pacer = Pacer::new(shape, 7);
        let t0 = Instant::now();
        let mut last = t0;
        let mut earliest = Duration::MAX;
        let mut latest = Duration::ZERO;
        // Spaced wider than the jitter: the draws themselves show.
        for i in 0..2000 {
            let now = t0 + i * 50 * MS;
            let release = pacer.admit(now).expect("no loss configured");
            assert!(release >= last, "packet {i} overtook the one ahead");
            last = release;
            earliest = earliest.min(release - now);
            latest = latest.max(release - now);
        }
        assert!(earliest >= 130 * MS && earliest < 135 * MS, "{earliest:?}");
        assert!(latest <= 170 * MS && latest > 165 * MS, "{latest:?}");
        // A burst closer than the jitter leaves in order all the same.
        let burst = t0 + 1000 * 50 * MS;
        let mut last = burst;
        for i in 0..100 {
            let release = pacer.admit(burst + i * (MS / 10)).expect("no loss");
            assert!(release >= last);
            last = release;
        }
    }

    #[test]
    fn loss_takes_about_its_share_and_repeats_with_the_seed() {
        let shape = LinkShape::delay(10 * MS).loss_per_mille(100);
        let t0 = Instant::now();
        let run = |seed| {
            let mut pacer = Pacer::new(shape, seed);
            (0..10_000)
                .map(|i| pacer.admit(t0 + i * MS).is_none())
                .collect::<Vec<bool>>()
        };
        let lost = run(3).iter().filter(|l| **l).count();
        assert!((800..1200).contains(&lost), "{lost} of 10000 lost at 100‰");
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn counters_round_trip_through_the_relay_line() {
        let counters = RelayCounters {
            a_to_b: 12,
            b_to_a: 10,
            dropped: 1,
            lost: 2,
            ignored: 3,
        };
        let log = format!("cq-delay: ready\nsomething else\n{}\n", counters.to_line());
        assert_eq!(RelayCounters::parse(&log), Some(counters));
        assert_eq!(counters.relayed(), 22);
        assert_eq!(RelayCounters::parse("cq-delay: ready\n"), None);
    }

    #[test]
    fn devices_are_named_after_the_peer() {
        assert_eq!(tun_name("cq-dc-b"), "cq-to-dc-b");
        assert_eq!(tun_name("cq-witness"), "cq-to-witness");
        assert!(tun_name("cq-site-1").len() <= 15);
    }
}
