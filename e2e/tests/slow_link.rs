//! Slow links (issue 8): `cq-delay` relays dc-a ↔ dc-b through TUN devices. With 100 ms one
//! way, the round trip between them is about 200 ms while dc-a ↔ witness stays direct; a TCP
//! connection opened before keeps working through the relay (and a new one opens); once
//! stopped, the pair is direct again and no device is left anywhere. Jitter never reorders,
//! loss is counted, and the scenario the runner calls delays dc-a ↔ dc-b for its 15 s.
//!
//! Only the network is built (no services): the round trips are measured with UDP and TCP echo
//! sockets that test threads create inside the namespaces (a socket stays in the namespace it
//! was created in), so the host's namespace carries no test traffic. Needs root (network
//! namespaces, /dev/net/tun) and `cq-delay` built (`cargo build --bins`). Fails loudly, never
//! skips.

// The test measures round trips on the wall clock.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use calanque_e2e::delay::{self, LinkShape, SlowLink};
use calanque_e2e::netns::{self, CORE, DC_A, DC_B, WITNESS};
use calanque_e2e::{Harness, HarnessOptions};
use nix::sched::{CloneFlags, setns};

const ECHO_PORT: u16 = 7007;
/// Bound on one echo: well above any delay configured here.
const ECHO_TIMEOUT: Duration = Duration::from_secs(2);
/// A direct path between two namespaces of one machine.
const DIRECT: Duration = Duration::from_millis(20);

/// Runs `f` on a thread that joined `namespace`: the sockets it creates belong to that
/// namespace wherever they are used afterwards.
fn in_namespace<T: Send>(namespace: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let target = File::open(format!("/run/netns/{namespace}"))
                    .with_context(|| format!("opening namespace {namespace}"))?;
                setns(&target, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("joining {namespace}"))?;
                f()
            })
            .join()
            .map_err(|_| anyhow!("a thread in {namespace} panicked"))?
    })
}

/// UDP and TCP echo on `address:ECHO_PORT` inside a namespace, until dropped.
#[derive(Debug)]
struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Echo {
    fn start(namespace: &str, address: Ipv4Addr) -> Result<Echo> {
        let (udp, tcp) = in_namespace(namespace, || {
            Ok((
                UdpSocket::bind((address, ECHO_PORT))?,
                TcpListener::bind((address, ECHO_PORT))?,
            ))
        })?;
        // Timeouts only so that the threads notice `stop`.
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        tcp.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let udp_stop = Arc::clone(&stop);
        let udp_thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buffer) {
                    let _ = udp.send_to(&buffer[..n], from);
                }
            }
        });
        let tcp_stop = Arc::clone(&stop);
        let tcp_thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !tcp_stop.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((stream, _)) => {
                        let stop = Arc::clone(&tcp_stop);
                        connections.push(std::thread::spawn(move || echo_stream(stream, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for connection in connections {
                let _ = connection.join();
            }
        });
        Ok(Echo {
            stop,
            threads: vec![udp_thread, tcp_thread],
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn echo_stream(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// A UDP socket in one namespace sending numbered datagrams to a peer's echo.
#[derive(Debug)]
struct Pinger {
    socket: UdpSocket,
    next: u32,
}

impl Pinger {
    fn new(namespace: &str, peer: Ipv4Addr) -> Result<Pinger> {
        let socket = in_namespace(namespace, || {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect((peer, ECHO_PORT))?;
            Ok(socket)
        })?;
        socket.set_read_timeout(Some(ECHO_TIMEOUT))?;
        Ok(Pinger { socket, next: 0 })
    }

    /// One round trip (a late echo of an earlier datagram is skipped).
    fn round_trip(&mut self) -> Result<Duration> {
        self.next += 1;
        let sent = Instant::now();
        self.socket.send(&self.next.to_be_bytes())?;
        let mut buffer = [0u8; 64];
        loop {
            let n = self
                .socket
                .recv(&mut buffer)
                .with_context(|| format!("no echo within {ECHO_TIMEOUT:?}"))?;
            if buffer[..n] == self.next.to_be_bytes() {
                return Ok(sent.elapsed());
            }
        }
    }

    fn median(&mut self, samples: usize) -> Result<Duration> {
        let mut rtts = (0..samples)
            .map(|_| self.round_trip())
            .collect::<Result<Vec<_>>>()?;
        Ok(median(&mut rtts))
    }

    /// Sends `count` datagrams back to back, then collects the echoes for `wait`: the sequence
    /// numbers in arrival order and each one's round trip.
    fn burst(&mut self, count: u32, wait: Duration) -> Result<Vec<(u32, Duration)>> {
        let first = self.next + 1;
        let mut sent_at = Vec::new();
        for _ in 0..count {
            self.next += 1;
            sent_at.push(Instant::now());
            self.socket.send(&self.next.to_be_bytes())?;
        }
        self.socket
            .set_read_timeout(Some(Duration::from_millis(50)))?;
        let until = Instant::now() + wait;
        let mut echoes = Vec::new();
        let mut buffer = [0u8; 64];
        while Instant::now() < until {
            if let Ok(4) = self.socket.recv(&mut buffer) {
                let seq = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
                if let Some(sent) = seq.checked_sub(first).and_then(|i| sent_at.get(i as usize)) {
                    echoes.push((seq, sent.elapsed()));
                }
            }
        }
        self.socket.set_read_timeout(Some(ECHO_TIMEOUT))?;
        Ok(echoes)
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A TCP connection opened from `namespace` to a peer's echo; returns it and how long the
/// handshake took.
fn tcp_connect(namespace: &str, peer: Ipv4Addr) -> Result<(TcpStream, Duration)> {
    let started = Instant::now();
    let stream = in_namespace(namespace, || {
        Ok(TcpStream::connect_timeout(
            &(peer, ECHO_PORT).into(),
            ECHO_TIMEOUT,
        )?)
    })?;
    let took = started.elapsed();
    stream.set_read_timeout(Some(ECHO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok((stream, took))
}

fn tcp_round_trip(stream: &mut TcpStream) -> Result<Duration> {
    let started = Instant::now();
    stream.write_all(b"slow-link")?;
    let mut echo = [0u8; 9];
    stream
        .read_exact(&mut echo)
        .context("no TCP echo through the link")?;
    ensure!(&echo == b"slow-link", "echo {echo:?}");
    Ok(started.elapsed())
}

/// The interfaces of `namespace` (`None`: the host's) whose name starts with `cq-to-`.
fn relay_devices(namespace: Option<&str>) -> Result<Vec<String>> {
    let mut command = Command::new("ip");
    if let Some(namespace) = namespace {
        command.args(["-n", namespace]);
    }
    let output = command.args(["-o", "link", "show"]).output()?;
    ensure!(output.status.success(), "ip link show failed");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("cq-to-"))
        .collect())
}

fn route_to(namespace: &str, peer: Ipv4Addr) -> Result<String> {
    let output = Command::new("ip")
        .args(["-n", namespace, "route", "get", &peer.to_string()])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn a_slow_link_delays_only_its_pair_and_is_restored() -> Result<()> {
    calanque_e2e::init_test_logs();
    let started = Instant::now();
    let mut harness = Harness::new(HarnessOptions::default())?;
    let topology = harness.topology();
    let (address_b, witness) = (topology.address(DC_B)?, topology.address(WITNESS)?);
    let echo_b = Echo::start(DC_B, address_b)?;
    let echo_witness = Echo::start(WITNESS, witness)?;
    let mut to_b = Pinger::new(DC_A, address_b)?;
    let mut to_witness = Pinger::new(DC_A, witness)?;
    let (mut tcp, _) = tcp_connect(DC_A, address_b)?;

    let direct_before = to_b.median(5)?;
    ensure!(
        direct_before < DIRECT,
        "dc-a ↔ dc-b before: {direct_before:?}"
    );
    let tcp_before = tcp_round_trip(&mut tcp)?;

    let link = SlowLink::start(
        &mut harness,
        DC_A,
        DC_B,
        LinkShape::delay(Duration::from_millis(100)),
    )?;
    let route = route_to(DC_A, address_b)?;
    ensure!(
        route.contains("dev cq-to-dc-b"),
        "dc-a's route to dc-b: {route}"
    );
    let slow = to_b.median(9)?;
    let witness_while_slow = to_witness.median(5)?;
    // The connection opened before the link went slow now takes the relay.
    let tcp_slow = tcp_round_trip(&mut tcp)?;
    let (mut fresh, handshake) = tcp_connect(DC_A, address_b)?;
    let fresh_slow = tcp_round_trip(&mut fresh)?;
    let counters = link.stop(&mut harness)?;

    let direct_after = to_b.median(5)?;
    let tcp_after = tcp_round_trip(&mut tcp)?;
    let route = route_to(DC_A, address_b)?;
    eprintln!(
        "slow link 100 ms one way: dc-a↔dc-b median RTT {:.2} ms before, {:.1} ms slow, {:.2} ms \
         after; dc-a↔witness {:.2} ms while slow; TCP echo {:.2} → {:.1} → {:.2} ms on one \
         connection, a new one's handshake {:.1} ms and echo {:.1} ms; relay {counters:?}",
        ms(direct_before),
        ms(slow),
        ms(direct_after),
        ms(witness_while_slow),
        ms(tcp_before),
        ms(tcp_slow),
        ms(tcp_after),
        ms(handshake),
        ms(fresh_slow),
    );
    let window = Duration::from_millis(190)..Duration::from_millis(300);
    ensure!(
        window.contains(&slow),
        "median RTT {slow:?} with 100 ms one way"
    );
    ensure!(
        witness_while_slow < DIRECT,
        "dc-a ↔ witness slowed too: {witness_while_slow:?}"
    );
    ensure!(window.contains(&tcp_slow), "the TCP echo took {tcp_slow:?}");
    ensure!(
        window.contains(&handshake),
        "the TCP handshake took {handshake:?}"
    );
    ensure!(
        window.contains(&fresh_slow),
        "the new TCP echo took {fresh_slow:?}"
    );
    ensure!(
        direct_after < DIRECT,
        "dc-a ↔ dc-b after stop: {direct_after:?}"
    );
    ensure!(tcp_after < DIRECT, "the TCP echo after stop: {tcp_after:?}");
    ensure!(
        route.contains("dev eth0"),
        "dc-a's route to dc-b after: {route}"
    );
    ensure!(
        counters.a_to_b >= 9 && counters.b_to_a >= 9,
        "the echoes went through the relay: {counters:?}"
    );
    ensure!(
        counters.dropped == 0 && counters.lost == 0 && counters.ignored == 0,
        "{counters:?}"
    );
    for namespace in [Some(DC_A), Some(DC_B), Some(CORE), None] {
        let left = relay_devices(namespace)?;
        ensure!(left.is_empty(), "devices left in {namespace:?}: {left:?}");
    }

    // Jitter and loss: a burst keeps its order, and some of it is lost.
    let shape = LinkShape::delay(Duration::from_millis(50))
        .jitter(Duration::from_millis(30))
        .loss_per_mille(200);
    let link = SlowLink::start(&mut harness, DC_A, DC_B, shape)?;
    ensure!(
        link.process_name().ends_with("-2"),
        "a second slow link gets a new relay: {}",
        link.process_name()
    );
    let echoes = to_b.burst(200, Duration::from_secs(1))?;
    let counters = link.stop(&mut harness)?;
    let seqs: Vec<u32> = echoes.iter().map(|(seq, _)| *seq).collect();
    let mut rtts: Vec<Duration> = echoes.iter().map(|(_, rtt)| *rtt).collect();
    let (fastest, slowest) = (
        rtts.iter().min().copied().unwrap_or_default(),
        rtts.iter().max().copied().unwrap_or_default(),
    );
    eprintln!(
        "slow link 50 ± 30 ms, 200‰ loss: {} of 200 echoed, RTT {:.1}..{:.1} ms (median {:.1}); \
         relay {counters:?}",
        echoes.len(),
        ms(fastest),
        ms(slowest),
        ms(median(&mut rtts)),
    );
    ensure!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the burst came back out of order: {seqs:?}"
    );
    ensure!(
        (80..180).contains(&echoes.len()),
        "{} of 200 echoed at 200‰ loss each way",
        echoes.len()
    );
    ensure!(counters.lost > 0, "{counters:?}");
    ensure!(
        fastest >= Duration::from_millis(40) && slowest < Duration::from_millis(400),
        "round trips {fastest:?}..{slowest:?} with 50 ± 30 ms each way"
    );

    // A relay killed (kill -9) takes its devices and their routes with it: the pair is direct
    // again rather than cut, and `stop` says the relay died.
    let link = SlowLink::start(
        &mut harness,
        DC_A,
        DC_B,
        LinkShape::delay(Duration::from_millis(100)),
    )?;
    harness.kill(link.process_name())?;
    let orphaned = to_b.median(3)?;
    ensure!(orphaned < DIRECT, "with the relay killed: {orphaned:?}");
    let error = link
        .stop(&mut harness)
        .expect_err("stopping a killed relay");
    ensure!(
        format!("{error:#}").contains("exited before it was stopped"),
        "{error:#}"
    );
    for namespace in [Some(DC_A), Some(DC_B), Some(CORE), None] {
        let left = relay_devices(namespace)?;
        ensure!(left.is_empty(), "devices left in {namespace:?}: {left:?}");
    }

    drop((echo_b, echo_witness));
    harness.shutdown()?;
    ensure!(netns::leftover_namespaces()?.is_empty(), "namespaces left");
    ensure!(relay_devices(None)?.is_empty(), "devices left in the host");
    eprintln!(
        "slow link test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn the_slow_link_scenario_delays_dc_a_to_dc_b_for_its_span() -> Result<()> {
    calanque_e2e::init_test_logs();
    let mut harness = Harness::new(HarnessOptions::default())?;
    let address_b = harness.topology().address(DC_B)?;
    let echo_b = Echo::start(DC_B, address_b)?;
    let mut to_b = Pinger::new(DC_A, address_b)?;

    let mut rtts = Vec::new();
    let mut spans = Vec::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    let note = delay::apply_slow_link_scenario(&mut harness, |_, span| {
        spans.push(span);
        let until = Instant::now() + span;
        while Instant::now() < until {
            match to_b.round_trip() {
                Ok(rtt) => rtts.push(rtt),
                Err(error) => failures.push(format!("{error:#}")),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })?;
    let took = started.elapsed();
    let after = to_b.median(5)?;
    let samples = rtts.len();
    let slow = median(&mut rtts);
    eprintln!(
        "slow-link scenario: {note}; median RTT {:.1} ms over {samples} echoes \
         ({:.1}..{:.1} ms), {:.2} ms after; took {:.1} s",
        ms(slow),
        ms(rtts.first().copied().unwrap_or_default()),
        ms(rtts.last().copied().unwrap_or_default()),
        ms(after),
        took.as_secs_f64()
    );
    ensure!(
        spans == [delay::SCENARIO_SPAN],
        "watch called with {spans:?}"
    );
    ensure!(
        note.starts_with("dc-a↔dc-b delayed 150 ms ±20 ms one way for 15 s: "),
        "{note}"
    );
    ensure!(
        note.ends_with(" dropped") && !note.contains(": 0 packets"),
        "{note}"
    );
    ensure!(failures.is_empty(), "echoes lost: {failures:?}");
    ensure!(samples >= 20, "{samples} echoes in 15 s");
    ensure!(
        Duration::from_millis(260) <= rtts[0] && rtts[samples - 1] < Duration::from_millis(400),
        "round trips {:?}..{:?} with 150 ± 20 ms each way",
        rtts[0],
        rtts[samples - 1]
    );
    ensure!(
        (Duration::from_millis(280)..Duration::from_millis(330)).contains(&slow),
        "median {slow:?}"
    );
    ensure!(after < DIRECT, "after the scenario: {after:?}");

    drop(echo_b);
    harness.shutdown()?;
    Ok(())
}
