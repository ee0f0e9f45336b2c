//! A measurement, not an assertion: RTP packets per second through one session whose relay
//! runs on a single-threaded runtime (one core), next to the same phones talking directly
//! (the kernel's loopback alone) in the same run. `MEDIA_BENCH_PACKETS` sets the count
//! (default 200,000 in release, 20,000 in debug builds); run with `--release --nocapture` for figures worth quoting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a measurement prints

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use media::relay::{LegOptions, SessionConfig};
use media::{AllocateRequest, MediaConfig, MediaControl};

/// Datagrams in flight at most: the sender never overruns the receive buffers, so the figure
/// is throughput, not loss.
const WINDOW: u64 = 256;

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
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

/// Sends `count` 172-byte RTP packets round-robin from each sender to its destination;
/// returns packets per second received at `receiver`.
fn pump(senders: &[(UdpSocket, SocketAddr)], receiver: UdpSocket, count: u64) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let started = now();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while counter.load(Ordering::Relaxed) < count {
            match receiver.recv(&mut buf) {
                Ok(_) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => break, // a loss: stop waiting
            }
        }
    });
    let mut packet = vec![0u8; 172];
    packet[0] = 0x80;
    for sequence in 0..count {
        while sequence - received.load(Ordering::Relaxed) >= WINDOW {
            std::thread::yield_now();
        }
        packet[2..4].copy_from_slice(&(sequence as u16).to_be_bytes());
        let (sender, to) = &senders[sequence as usize % senders.len()];
        sender.send_to(&packet, *to).unwrap();
    }
    reader.join().unwrap();
    let elapsed = now().duration_since(started);
    let got = received.load(Ordering::Relaxed);
    assert_eq!(got, count, "packets lost");
    got as f64 / elapsed.as_secs_f64()
}

#[allow(clippy::disallowed_methods)] // a measurement reads the wall clock
fn now() -> Instant {
    Instant::now()
}

/// A relay on its own single-threaded runtime (one core) with one session per phone in
/// `callers`, every leg B towards `callee`; returns each session's leg-A address and a stop.
fn relay_on_one_core(
    callers: &[UdpSocket],
    callee: SocketAddr,
) -> (Vec<SocketAddr>, impl FnOnce() -> Option<Duration>) {
    // Within 16384–32767, below Linux's ephemeral ports (32768–60999) where the phones'
    // sockets land, with room for pairs another program holds (they are skipped).
    let pairs = 2 * callers.len() as u16;
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
            session: SessionConfig {
                idle_timeout: Duration::from_secs(600),
                relatch_after: None,
            },
            socket_buffer: 1 << 20,
            ..MediaConfig::default()
        })
        .unwrap()
    };
    let legs = callers
        .iter()
        .map(|caller| {
            runtime
                .block_on(media.allocate(AllocateRequest {
                    call_id: "bench".into(),
                    leg_a: LegOptions {
                        remote: Some(caller.local_addr().unwrap()),
                        behind_nat: false,
                        rtcp_mux: false,
                    },
                    leg_b: LegOptions {
                        remote: Some(callee),
                        behind_nat: false,
                        rtcp_mux: false,
                    },
                }))
                .unwrap()
                .leg_a
        })
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = std::thread::spawn(move || {
        let before = thread_cpu();
        runtime.block_on(async {
            let _ = stopped.await;
        });
        let used = thread_cpu()
            .zip(before)
            .map(|(after, before)| after - before);
        drop(media);
        used
    });
    (legs, move || {
        let _ = stop.send(());
        relay.join().unwrap()
    })
}

/// CPU time (user + system) of the calling thread, from /proc (clock ticks of 10 ms, the
/// usual CLK_TCK on Linux): the relay's own cost, whatever else the machine runs.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[test]
fn relay_throughput_on_one_core() {
    let count: u64 = std::env::var("MEDIA_BENCH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            20_000
        } else {
            200_000
        });
    let sessions: usize = if cfg!(debug_assertions) { 20 } else { 200 };
    let b = phone();
    let callee = b.local_addr().unwrap();

    // The peer in the same run: the phones straight to B.
    let callers: Vec<UdpSocket> = (0..sessions).map(|_| phone()).collect();
    let direct_senders: Vec<(UdpSocket, SocketAddr)> = callers
        .iter()
        .map(|c| (c.try_clone().unwrap(), callee))
        .collect();
    let direct = pump(&direct_senders[..1], b.try_clone().unwrap(), count);

    // One stream through one session.
    let (legs, stop) = relay_on_one_core(&callers[..1], callee);
    let one = pump(
        &[(callers[0].try_clone().unwrap(), legs[0])],
        b.try_clone().unwrap(),
        count,
    );
    let one_cpu = per_packet(stop(), count);

    // Many sessions, one packet each in turn: each wake-up finds about one datagram, as with
    // real calls (50 packets/s per stream).
    let (legs, stop) = relay_on_one_core(&callers, callee);
    let senders: Vec<(UdpSocket, SocketAddr)> = callers
        .iter()
        .zip(&legs)
        .map(|(c, leg)| (c.try_clone().unwrap(), *leg))
        .collect();
    let many = pump(&senders, b.try_clone().unwrap(), count);
    let many_cpu = per_packet(stop(), count);

    println!(
        "media relay, {count} RTP packets of 172 B, window {WINDOW}, relay on one core:\n  \
         direct loopback (no relay)   {direct:>9.0} pkt/s\n  \
         1 session                    {one:>9.0} pkt/s  ({:.2} of direct)  relay CPU {one_cpu:.2} µs/pkt\n  \
         {:<28} {many:>9.0} pkt/s  ({:.2} of direct)  relay CPU {many_cpu:.2} µs/pkt \
         = {:.0} pkt/s per core = {:.0} one-way G.711 streams",
        one / direct,
        format!("{sessions} sessions round-robin"),
        many / direct,
        1e6 / many_cpu,
        1e6 / many_cpu / 50.0,
    );
}

/// Relay CPU microseconds per packet (NaN where /proc is not there).
fn per_packet(cpu: Option<Duration>, count: u64) -> f64 {
    cpu.map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1e6 / count as f64)
}
