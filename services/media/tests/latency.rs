//! A measurement, not a timed assertion: the one-way latency the relay adds, i.e. (phone A's
//! send → phone B's receive through the relay) minus (the same phones straight over loopback),
//! both measured in the same run on one monotonic clock (this process's `Instant`: the sending
//! phone stamps the send time into the RTP payload, the receiving phone subtracts it). The
//! relay runs on its own thread and single-threaded runtime (one core), with default settings,
//! as in `throughput.rs`. Phone A and phone B are one socket each, shared by every call, each
//! received on a thread of its own (a real phone is a process the packet has to wake); the
//! relay has its four sockets per call as in production. The phones' costs are in both paths.
//!
//! 1. Ping-pong, one call: A sends, B echoes on receipt, A waits for the echo; one packet in
//!    flight. "Idle": one round every 20 ms (a lone call; the relay and the phones sleep
//!    between packets), direct and relay rounds interleaved 10 ms apart. "Back to back": the
//!    next round at once (warm CPUs; the relay's own processing).
//! 2. Load: N calls, each sending 172-byte G.711 packets (20 ms of audio) every 20 ms in both
//!    directions (100 packets/s per call), each stream at a random phase as independent phones
//!    are; first direct, then through the relay; samples from the first `warm-up` are not
//!    counted (latching, first wake-ups); loss is counted over every packet.
//!
//! Percentiles are per path; "added" is relay minus direct at the same percentile (the two
//! runs are not paired packet by packet, so a noisy direct run can make a tail negative).
//! Printed with them: the relay thread's CPU, its wake-ups and how often another thread took
//! its CPU, and the machine's CPU pressure (/proc/pressure/cpu): on a shared machine the tails
//! are mostly waits for a CPU (`scripts/bench-media.sh` also runs this under `chrt -f`).
//! The only assertions are about delivery: ≥ 99 % up to 100 calls, at least half above, and
//! no more than 1 % lost in ping-pong.
//!
//! Environment: `MEDIA_LATENCY_SESSIONS` ("100 500" in release, "100" in debug),
//! `MEDIA_LATENCY_SECONDS` (measured seconds per load run: 5, debug 2), `MEDIA_LATENCY_ROUNDS`
//! (back-to-back rounds: 5,000, debug 500); the idle ping-pong lasts as long as a load run.
//! Run with `--release --nocapture` for figures worth quoting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a measurement prints

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use media::relay::LegOptions;
use media::{AllocateRequest, Allocation, MediaConfig, MediaControl};

/// A G.711 packet's audio: 20 ms at 8,000 samples/s, one byte each.
const PTIME: Duration = Duration::from_millis(20);
/// 12-byte RTP header + 160 bytes of audio; the send time (ns) is in the audio's first 8 bytes.
const PACKET: usize = 172;
/// How long the receiving phones wait for stragglers after the last send; later is lost (a
/// jitter buffer would have given up on it long before).
const DRAIN: Duration = Duration::from_millis(300);
/// How long a ping-pong waits for its packet before counting it lost.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

struct Settings {
    sessions: Vec<usize>,
    seconds: Duration,
    warmup: Duration,
    rounds: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let release = !cfg!(debug_assertions);
        let sessions = std::env::var("MEDIA_LATENCY_SESSIONS")
            .ok()
            .map(|v| {
                v.split_whitespace()
                    .map(|n| n.parse::<usize>().unwrap().clamp(1, 3_000))
                    .collect()
            })
            .unwrap_or_else(|| if release { vec![100, 500] } else { vec![100] });
        let seconds: u64 = std::env::var("MEDIA_LATENCY_SECONDS")
            .ok()
            .map(|v| v.parse().unwrap())
            .unwrap_or(if release { 5 } else { 2 });
        let rounds = std::env::var("MEDIA_LATENCY_ROUNDS")
            .ok()
            .map(|v| v.parse().unwrap())
            .unwrap_or(if release { 5_000 } else { 500 });
        Settings {
            sessions,
            seconds: Duration::from_secs(seconds.clamp(1, 60)),
            warmup: Duration::from_millis(if release { 1_000 } else { 500 }),
            rounds: rounds.clamp(1, 1_000_000),
        }
    }
}

#[allow(clippy::disallowed_methods)] // a measurement reads the wall clock
fn now() -> Instant {
    Instant::now()
}

/// The one clock of the run: nanoseconds since the test started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn ns(self) -> u64 {
        now().duration_since(self.0).as_nanos() as u64
    }
}

fn phone() -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.into()
}

/// An RTP packet of `stream` (its SSRC) with sequence number `seq`, PCMU.
fn rtp(stream: u32, seq: u16) -> [u8; PACKET] {
    let mut packet = [0xffu8; PACKET]; // µ-law silence
    packet[0] = 0x80;
    packet[1] = 0; // PCMU
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet[8..12].copy_from_slice(&stream.to_be_bytes());
    packet
}

fn stamp(packet: &mut [u8], sent_ns: u64) {
    packet[12..20].copy_from_slice(&sent_ns.to_be_bytes());
}

fn stamped(packet: &[u8]) -> u64 {
    u64::from_be_bytes(packet[12..20].try_into().unwrap())
}

fn sequence(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[2], packet[3]])
}

/// Reads and discards whatever a socket holds (stragglers of an earlier run).
fn discard_pending(socket: &UdpSocket) {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    while socket.recv(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
}

/// The relay on its own thread and single-threaded runtime (one core), default settings, with
/// `sessions` sessions whose leg A is phone `a` and leg B phone `b`. Returns the allocations
/// and a stop that returns what the relay thread used while it ran.
fn relay_on_one_core(
    sessions: usize,
    a: SocketAddr,
    b: SocketAddr,
) -> (Vec<Allocation>, impl FnOnce() -> Option<ThreadStats>) {
    // Within the default range 16384–32767, below Linux's ephemeral ports (32768–60999) where
    // every test's client sockets land, at a random place, with room for pairs someone holds.
    let pairs = 2 * sessions as u16;
    let span = 2 * (pairs + 64 + pairs / 8);
    let base = 16_384 + 2 * rand::random_range(0..=(16_384 - span) / 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (media, _events) = {
        let _guard = runtime.enter();
        media::start(MediaConfig {
            port_first: base,
            port_last: base + span - 1,
            ..MediaConfig::default()
        })
        .unwrap()
    };
    let leg = |remote| LegOptions {
        remote: Some(remote),
        behind_nat: false,
        rtcp_mux: false,
    };
    let allocations = (0..sessions)
        .map(|_| {
            runtime
                .block_on(media.allocate(AllocateRequest {
                    call_id: "latency".into(),
                    leg_a: leg(a),
                    leg_b: leg(b),
                }))
                .unwrap()
        })
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            let before = thread_stats();
            runtime.block_on(async {
                let _ = stopped.await;
            });
            let used = thread_stats()
                .zip(before)
                .map(|(after, before)| ThreadStats {
                    cpu: after.cpu - before.cpu,
                    sleeps: after.sleeps - before.sleeps,
                    preempted: after.preempted - before.preempted,
                });
            drop(media);
            used
        })
        .unwrap();
    (allocations, move || {
        let _ = stop.send(());
        relay.join().unwrap()
    })
}

/// The calling thread's CPU time (user + system, /proc 10 ms ticks) and its context
/// switches: voluntary (it went to sleep: in the relay, one per wake-up by a packet) and
/// involuntary (another task took its CPU).
#[derive(Clone, Copy)]
struct ThreadStats {
    cpu: Duration,
    sleeps: u64,
    preempted: u64,
}

fn thread_stats() -> Option<ThreadStats> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .parse()
            .ok()
    };
    Some(ThreadStats {
        cpu: Duration::from_millis(ticks * 10),
        sleeps: field("voluntary_ctxt_switches:")?,
        preempted: field("nonvoluntary_ctxt_switches:")?,
    })
}

/// This process's CPU time (/proc/self/stat, 1/100 s ticks) and the machine's CPU pressure
/// (/proc/pressure/cpu "some": µs during which some runnable task, of this test or not, waited
/// for a CPU): how much CPU the phones and the relay took, and how contended the machine was.
fn cpu_counters() -> (Option<u64>, Option<u64>) {
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        });
    let waited = std::fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|pressure| {
            let some = pressure.lines().next()?;
            some.rsplit_once("total=")?.1.trim().parse().ok()
        });
    (own, waited)
}

/// "this test 0.93 cores, CPU pressure 12 %" since `before` (read at `started`).
fn cpu_line(before: (Option<u64>, Option<u64>), started: Instant) -> String {
    let wall = now().duration_since(started).as_secs_f64();
    let after = cpu_counters();
    let mut line = String::new();
    if let Some((before, after)) = before.0.zip(after.0) {
        line += &format!(
            "this test {:.2} cores",
            (after - before) as f64 / 100.0 / wall
        );
    }
    if let Some((before, after)) = before.1.zip(after.1) {
        line += &format!(
            ", CPU pressure {:.0} %",
            (after - before) as f64 / 1e6 / wall * 100.0
        );
    }
    line
}

/// One-way times (ns) of one path, and what was lost.
#[derive(Default)]
struct Samples {
    latencies: Vec<u64>,
    sent: u64,
    received: u64,
}

impl Samples {
    fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }

    fn percentiles(&mut self) -> [f64; 4] {
        self.latencies.sort_unstable();
        let at = |q: f64| {
            if self.latencies.is_empty() {
                return f64::NAN;
            }
            let index = ((self.latencies.len() - 1) as f64 * q).round() as usize;
            self.latencies[index] as f64 / 1e3
        };
        [at(0.5), at(0.9), at(0.99), at(1.0)]
    }
}

/// Where each phone sends for a path: A → `to_b`, B → `to_a`.
#[derive(Clone, Copy)]
struct Path {
    to_b: SocketAddr,
    to_a: SocketAddr,
}

/// Receives the packet of sequence `seq` on `socket` (skipping stragglers of earlier lost
/// rounds); returns its one-way time.
fn receive(clock: Clock, socket: &UdpSocket, seq: u16, buf: &mut [u8]) -> Option<u64> {
    loop {
        match socket.recv(buf) {
            Ok(len) if len == PACKET && sequence(buf) == seq => {
                return Some(clock.ns() - stamped(buf));
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Ping-pong rounds alternating between the direct path (SSRC 0) and the relay (SSRC 1): A
/// sends and waits for the echo; phone B, a thread of its own as a real phone is a process
/// that the packet must wake, echoes each packet on receipt along the path it came by. `pace`
/// spaces the rounds (each path's round starts `pace / 2` after the other's); `None` runs
/// them back to back. Returns the samples of the direct path and of the relay.
fn ping_pong_rounds(
    clock: Clock,
    (a, b): (&UdpSocket, &UdpSocket),
    paths: [Path; 2],
    rounds: usize,
    pace: Option<Duration>,
) -> [Samples; 2] {
    for phone in [a, b] {
        discard_pending(phone);
        phone.set_read_timeout(Some(PING_TIMEOUT)).unwrap();
    }
    let mut at_a = [Samples::default(), Samples::default()];
    let done = AtomicBool::new(false);
    let at_b = std::thread::scope(|scope| {
        let echo = scope.spawn(|| {
            let mut at_b = [Samples::default(), Samples::default()];
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                let Ok(len) = b.recv(&mut buf) else {
                    continue;
                };
                let arrived = clock.ns();
                let path = u32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
                if len != PACKET || path > 1 {
                    continue;
                }
                at_b[path].received += 1;
                at_b[path].latencies.push(arrived - stamped(&buf));
                stamp(&mut buf, clock.ns());
                b.send_to(&buf[..len], paths[path].to_a).unwrap();
            }
            at_b
        });
        let mut buf = [0u8; 2048];
        let started = now();
        for round in 0..rounds {
            let seq = round as u16;
            for (path, samples) in at_a.iter_mut().enumerate() {
                if let Some(pace) = pace {
                    sleep_until(started + pace * round as u32 + pace / 2 * path as u32);
                }
                let mut packet = rtp(path as u32, seq);
                stamp(&mut packet, clock.ns());
                a.send_to(&packet, paths[path].to_b).unwrap();
                samples.sent += 1;
                if let Some(latency) = receive(clock, a, seq, &mut buf) {
                    samples.received += 1;
                    samples.latencies.push(latency);
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        echo.join().unwrap()
    });
    // Both directions together: A's sends reached B (`at_b`), B's echoes reached A (`at_a`).
    at_a.into_iter()
        .zip(at_b)
        .map(|(mut to_a, to_b)| {
            let echoed = to_b.received;
            to_a.latencies.extend(to_b.latencies);
            Samples {
                latencies: to_a.latencies,
                sent: to_a.sent + echoed,
                received: to_a.received + echoed,
            }
        })
        .collect::<Vec<_>>()
        .try_into()
        .ok()
        .unwrap()
}

fn sleep_until(deadline: Instant) {
    let at = now();
    if deadline > at {
        std::thread::sleep(deadline - at);
    }
}

/// `sessions` calls at 50 packets/s in each direction for `warmup + seconds`: A sends stream
/// `i` to `to_b[i]`, B sends it to `to_a[i]`. Latencies of packets sent after `warmup`.
fn load(
    clock: Clock,
    (a, b): (&UdpSocket, &UdpSocket),
    paths: &[Path],
    warmup: Duration,
    seconds: Duration,
) -> Samples {
    for phone in [a, b] {
        discard_pending(phone);
        phone
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
    }
    // Each stream at its own random phase within the 20 ms: independent phones.
    let mut schedule: Vec<(Duration, usize)> = (0..2 * paths.len())
        .map(|stream| (PTIME.mul_f64(rand::random_range(0.0..1.0)), stream))
        .collect();
    schedule.sort_unstable();
    let periods = ((warmup + seconds).as_nanos() / PTIME.as_nanos()) as u32;
    let counted_from = clock.ns() + warmup.as_nanos() as u64;
    let done = AtomicBool::new(false);
    let results = Mutex::new(Samples::default());
    let mut sent = 0;
    std::thread::scope(|scope| {
        for phone in [a, b] {
            let (done, results) = (&done, &results);
            scope.spawn(move || {
                let mut mine = Samples {
                    latencies: Vec::with_capacity(periods as usize * paths.len()),
                    ..Samples::default()
                };
                let mut buf = [0u8; 2048];
                while !done.load(Ordering::Relaxed) {
                    let Ok(len) = phone.recv(&mut buf) else {
                        continue;
                    };
                    let arrived = clock.ns();
                    if len != PACKET {
                        continue;
                    }
                    mine.received += 1;
                    let sent = stamped(&buf);
                    if sent >= counted_from {
                        mine.latencies.push(arrived - sent);
                    }
                }
                let mut all = results.lock().unwrap();
                all.received += mine.received;
                all.latencies.extend(mine.latencies);
            });
        }
        let started = now();
        for period in 0..periods {
            for &(phase, stream) in &schedule {
                sleep_until(started + PTIME * period + phase);
                let session = stream / 2;
                let (from, to) = if stream % 2 == 0 {
                    (a, paths[session].to_b)
                } else {
                    (b, paths[session].to_a)
                };
                let mut packet = rtp(stream as u32, period as u16);
                stamp(&mut packet, clock.ns());
                // A full send buffer is a loss like any other.
                let _ = from.send_to(&packet, to);
                sent += 1;
            }
        }
        std::thread::sleep(DRAIN);
        done.store(true, Ordering::Relaxed);
    });
    let mut samples = results.into_inner().unwrap();
    samples.sent = sent;
    samples
}

fn header() {
    println!(
        "  {:<34} {:>8} {:>8} {:>8} {:>8} {:>9}  {:>7}",
        "µs one-way", "samples", "p50", "p90", "p99", "max", "loss"
    );
}

fn row(label: &str, samples: &mut Samples) -> [f64; 4] {
    let p = samples.percentiles();
    println!(
        "  {label:<34} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>9.1}  {:>6.3}%",
        samples.latencies.len(),
        p[0],
        p[1],
        p[2],
        p[3],
        samples.loss() * 100.0
    );
    p
}

fn added(label: &str, direct: [f64; 4], relayed: [f64; 4]) {
    let d: Vec<f64> = relayed.iter().zip(direct).map(|(r, d)| r - d).collect();
    println!(
        "  {label:<34} {:>8} {:>+8.1} {:>+8.1} {:>+8.1} {:>+9.1}",
        "", d[0], d[1], d[2], d[3]
    );
}

#[test]
fn relay_added_latency() {
    let settings = Settings::from_env();
    let clock = Clock(now());
    let (a, b) = (phone(), phone());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let direct = Path {
        to_b: b_addr,
        to_a: a_addr,
    };
    println!(
        "\nmedia relay added one-way latency (relay on one single-threaded runtime, phones as \
         threads of the test, loopback, 172-byte G.711 RTP):"
    );

    // 1. Ping-pong on one session.
    let (allocations, stop) = relay_on_one_core(1, a_addr, b_addr);
    let relayed = Path {
        to_b: allocations[0].leg_a,
        to_a: allocations[0].leg_b,
    };
    let idle_rounds = (settings.seconds.as_millis() / PTIME.as_millis()) as usize;
    let (started, before) = (now(), cpu_counters());
    let [mut d, mut r] =
        ping_pong_rounds(clock, (&a, &b), [direct, relayed], idle_rounds, Some(PTIME));
    let idle_cpu = cpu_line(before, started);
    header();
    println!("  idle: 1 call, a ping-pong every 20 ms");
    let (pd, pr) = (row("  direct", &mut d), row("  relay", &mut r));
    added("  added by the relay", pd, pr);
    println!("    CPU, both paths: {idle_cpu}");
    let (started, before) = (now(), cpu_counters());
    let [mut d2, mut r2] =
        ping_pong_rounds(clock, (&a, &b), [direct, relayed], settings.rounds, None);
    let busy_cpu = cpu_line(before, started);
    println!("  back-to-back ping-pong, 1 call");
    let (pd2, pr2) = (row("  direct", &mut d2), row("  relay", &mut r2));
    added("  added by the relay", pd2, pr2);
    println!("    CPU, both paths: {busy_cpu}");
    stop();
    for samples in [&d, &r, &d2, &r2] {
        assert!(
            samples.loss() <= 0.01,
            "ping-pong lost {} of {}",
            samples.sent - samples.received,
            samples.sent
        );
    }

    // 2. Load: N calls at 50 packets/s each way.
    for &sessions in &settings.sessions {
        println!(
            "  {sessions} calls × 2 × 50 pkt/s = {} pkt/s, {} s measured after {} ms warm-up",
            sessions * 100,
            settings.seconds.as_secs(),
            settings.warmup.as_millis()
        );
        let paths = vec![direct; sessions];
        let (started, before) = (now(), cpu_counters());
        let mut d = load(clock, (&a, &b), &paths, settings.warmup, settings.seconds);
        let direct_cpu = cpu_line(before, started);
        let pd = row("  direct", &mut d);
        let (allocations, stop) = relay_on_one_core(sessions, a_addr, b_addr);
        let paths: Vec<Path> = allocations
            .iter()
            .map(|allocation| Path {
                to_b: allocation.leg_a,
                to_a: allocation.leg_b,
            })
            .collect();
        let (started, before) = (now(), cpu_counters());
        let mut r = load(clock, (&a, &b), &paths, settings.warmup, settings.seconds);
        let wall = now().duration_since(started);
        let relay_cpu = cpu_line(before, started);
        let relay_thread = stop();
        let pr = row("  relay", &mut r);
        added("  added by the relay", pd, pr);
        if let Some(used) = relay_thread {
            let packets = r.received.max(1) as f64;
            println!(
                "    relay thread: {:.0} % of one core, {:.1} µs per relayed packet, {:.2} \
                 wake-ups per packet, preempted {} times",
                used.cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
                used.cpu.as_secs_f64() * 1e6 / packets,
                used.sleeps as f64 / packets,
                used.preempted
            );
        }
        println!("    CPU, direct run: {direct_cpu}; relay run: {relay_cpu}");
        // Up to 100 calls (10,000 packets/s, a few % of a core) nothing may be lost; above,
        // only a relay that loses most of them fails.
        let floor = if sessions <= 100 { 0.99 } else { 0.5 };
        for (path, samples) in [("direct", &d), ("relay", &r)] {
            assert!(
                1.0 - samples.loss() >= floor,
                "{sessions} calls, {path}: only {} of {} packets delivered",
                samples.received,
                samples.sent
            );
        }
    }
}
