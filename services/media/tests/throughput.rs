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

/// Sends `count` 172-byte RTP packets from `sender` to `to`; returns packets per second
/// received at `receiver`.
fn pump(sender: &UdpSocket, to: SocketAddr, receiver: UdpSocket, count: u64) -> f64 {
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
            std::hint::spin_loop();
        }
        packet[2..4].copy_from_slice(&(sequence as u16).to_be_bytes());
        sender.send_to(&packet, to).unwrap();
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
    let a = phone();
    let b = phone();

    // The peer in the same run: A straight to B.
    let direct = pump(&a, b.local_addr().unwrap(), b.try_clone().unwrap(), count);

    // The relay on its own single-threaded runtime.
    let base = 20_000 + 2 * rand::random_range(0..19_000u16);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (media, _events) = {
        let _guard = runtime.enter();
        media::start(MediaConfig {
            port_first: base,
            port_last: base + 19,
            session: SessionConfig {
                idle_timeout: Duration::from_secs(600),
                relatch_after: None,
            },
            socket_buffer: 4 << 20,
            ..MediaConfig::default()
        })
        .unwrap()
    };
    let allocation = runtime
        .block_on(media.allocate(AllocateRequest {
            call_id: "bench".into(),
            leg_a: LegOptions {
                remote: Some(a.local_addr().unwrap()),
                behind_nat: false,
            },
            leg_b: LegOptions {
                remote: Some(b.local_addr().unwrap()),
                behind_nat: false,
            },
        }))
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = std::thread::spawn(move || {
        runtime.block_on(async {
            let _ = stopped.await;
        });
    });
    let relayed = pump(&a, allocation.leg_a, b.try_clone().unwrap(), count);
    let _ = stop.send(());
    relay.join().unwrap();

    println!(
        "media relay: {count} RTP packets (172 B), window {WINDOW}: relayed {relayed:.0} pkt/s \
         on one core; direct loopback {direct:.0} pkt/s; ratio {:.2}",
        relayed / direct
    );
}
