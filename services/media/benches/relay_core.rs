//! The relay core's forwarding decision per datagram, without sockets: what the sans-IO part
//! costs next to the two system calls (receive, send) every relayed packet also needs.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // a benchmark: one clock reading

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use media::relay::{LegOptions, PortPair, Session, SessionConfig, SessionId, Verdict};

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let a: std::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let b: std::net::SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let mut session = Session::new(
        SessionId(1),
        SessionConfig {
            idle_timeout: Duration::from_secs(60),
            relatch_after: Some(Duration::from_secs(2)),
        },
        now,
        (
            PortPair { rtp: 30_000 },
            LegOptions {
                remote: Some(a),
                behind_nat: false,
                rtcp_mux: false,
            },
        ),
        (
            PortPair { rtp: 30_002 },
            LegOptions {
                remote: Some(b),
                behind_nat: false,
                rtcp_mux: false,
            },
        ),
    );
    let mut packet = vec![0xd5u8; 172];
    packet[0] = 0x80;
    packet[1] = 8;
    c.bench_function("relay core: forward one RTP packet", |bencher| {
        bencher.iter(|| {
            let verdict = session.on_packet(now, black_box(30_000), black_box(a), &packet);
            assert!(matches!(verdict, Verdict::Forward(_)));
        })
    });
    let stranger: std::net::SocketAddr = "10.9.9.9:4000".parse().unwrap();
    c.bench_function("relay core: drop a stranger's packet", |bencher| {
        bencher.iter(|| session.on_packet(now, black_box(30_000), black_box(stranger), &packet))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
