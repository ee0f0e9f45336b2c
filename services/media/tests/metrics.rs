//! The relay's metrics move with real traffic: sessions open and closed, RTP and RTCP
//! relayed, and the quality a phone reports in RTCP (fraction lost, jitter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use media::relay::{LegOptions, SessionConfig};
use media::{AllocateRequest, MediaConfig, MediaControl};
use tokio::net::UdpSocket;

async fn bound_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = rtp.local_addr().unwrap().port();
        if port % 2 == 1 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
            return (rtp, rtcp);
        }
    }
}

async fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("nothing arrived")
        .unwrap();
    buf.truncate(len);
    buf
}

fn rtp(sequence: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
    p[2..4].copy_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// A receiver report with one block: 25 % lost, jitter 80 timestamp units (10 ms at 8 kHz).
fn receiver_report() -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 9];
    p.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe, 64, 0, 0, 3, 0, 0, 0x10, 0]);
    p.extend_from_slice(&80u32.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p
}

fn rtcp_of(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + 1)
}

#[tokio::test]
async fn sessions_packets_and_rtcp_quality_are_counted() {
    let registry = telemetry::Metrics::new("media");
    let base = 20_000 + 2 * rand::random_range(0..19_000u16);
    let (relay, _events) = media::start(MediaConfig {
        port_first: base,
        port_last: base + 19,
        session: SessionConfig {
            idle_timeout: Duration::from_secs(60),
            relatch_after: None,
        },
        metrics: Some(telemetry::MediaMetrics::register(&registry)),
        ..MediaConfig::default()
    })
    .unwrap();
    let (a_rtp, a_rtcp) = bound_pair().await;
    let (b_rtp, b_rtcp) = bound_pair().await;
    let allocation = relay
        .allocate(AllocateRequest {
            call_id: "metrics@test".into(),
            leg_a: LegOptions {
                remote: Some(a_rtp.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
            leg_b: LegOptions {
                remote: Some(b_rtp.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        })
        .await
        .unwrap();
    assert!(registry.encode().contains("calanque_media_sessions 1"));

    for sequence in 0..10 {
        a_rtp
            .send_to(&rtp(sequence), allocation.leg_a)
            .await
            .unwrap();
        receive(&b_rtp).await;
    }
    a_rtcp
        .send_to(&receiver_report(), rtcp_of(allocation.leg_a))
        .await
        .unwrap();
    assert_eq!(receive(&b_rtcp).await, receiver_report());
    // A packet from another host on B's port is dropped (B is not behind NAT: only its SDP
    // address's host may send).
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    stranger.send_to(&rtp(99), allocation.leg_b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = registry.encode();
    for expected in [
        r#"calanque_media_packets_total{kind="rtp",outcome="relayed"} 10"#,
        r#"calanque_media_packets_total{kind="rtcp",outcome="relayed"} 1"#,
        r#"calanque_media_packets_total{kind="rtp",outcome="dropped"} 1"#,
        "calanque_media_rtcp_fraction_lost_count 1",
        "calanque_media_rtcp_fraction_lost_sum 0.25",
        "calanque_media_rtcp_jitter_seconds_sum 0.01",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    relay.release(allocation.session).await.unwrap();
    assert!(registry.encode().contains("calanque_media_sessions 0"));
}
