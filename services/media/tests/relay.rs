//! The relay over real UDP on loopback: fake phones (plain sockets) on both sides of an
//! allocated session.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::net::SocketAddr;
use std::time::Duration;

use media::relay::{Leg, LegOptions, SessionConfig};
use media::{AllocateRequest, MediaConfig, MediaControl, MediaError, MediaEvent, MediaService};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A range of `pairs` port pairs somewhere in 20000–59999 (tests run in parallel; a pair
/// that is taken is skipped by the service).
fn config(pairs: u16, session: SessionConfig) -> MediaConfig {
    let base = 20_000 + 2 * rand::random_range(0..(20_000 - pairs));
    MediaConfig {
        port_first: base,
        port_last: base + 2 * pairs - 1,
        session,
        ..MediaConfig::default()
    }
}

fn start(pairs: u16, session: SessionConfig) -> (MediaService, mpsc::Receiver<MediaEvent>) {
    media::start(config(pairs, session)).unwrap()
}

/// No re-latching during a test: a stranger must never win.
fn steady() -> SessionConfig {
    SessionConfig {
        idle_timeout: Duration::from_secs(60),
        relatch_after: None,
    }
}

async fn phone() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// A phone that behaves: RTCP on its RTP port + 1, as its SDP implies.
async fn phone_with_rtcp() -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = phone().await;
        let port = rtp.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
            return (rtp, rtcp);
        }
    }
}

fn rtp(sequence: u16, payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, payload_type, 0, 0, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
    p[2..4].copy_from_slice(&sequence.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rtcp_receiver_report() -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0xca, 0xfe, 0xba, 0xbe]
}

async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (len, from) = timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("nothing arrived")
        .unwrap();
    buf.truncate(len);
    (buf, from)
}

async fn nothing_arrives(socket: &UdpSocket) {
    let mut buf = [0u8; 2048];
    let got = timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a datagram arrived: {got:?}");
}

fn rtcp_of(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + 1)
}

#[tokio::test]
async fn media_flows_both_ways_latched_to_where_a_natted_phone_sends_from() {
    let (media, _events) = start(4, steady());
    // Phone A is behind NAT: its SDP names a private address it never sends from.
    let (a_rtp, a_rtcp) = (phone().await, phone().await);
    let (b_rtp, b_rtcp) = phone_with_rtcp().await;
    let allocation = media
        .allocate(AllocateRequest {
            call_id: "call-1@test".into(),
            leg_a: LegOptions {
                remote: Some("192.168.1.20:7078".parse().unwrap()),
                behind_nat: true,
                rtcp_mux: false,
            },
            leg_b: LegOptions::default(),
        })
        .await
        .unwrap();
    assert_eq!(allocation.leg_a.port() % 2, 0);
    assert_eq!(allocation.leg_b.port() % 2, 0);
    assert!(allocation.leg_a.ip().is_loopback());

    // B's answer arrives.
    media
        .update(
            allocation.session,
            Leg::B,
            LegOptions {
                remote: Some(b_rtp.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        )
        .await
        .unwrap();

    // A → B: unchanged, from the relay's leg-B port.
    let voice = rtp(1, 0, &[0xd5; 160]);
    a_rtp.send_to(&voice, allocation.leg_a).await.unwrap();
    let (got, from) = receive(&b_rtp).await;
    assert_eq!(got, voice);
    assert_eq!(from, allocation.leg_b);

    // B → A: to the address A's packets came from (not its SDP).
    let reply = rtp(1, 0, &[0x55; 160]);
    b_rtp.send_to(&reply, allocation.leg_b).await.unwrap();
    let (got, from) = receive(&a_rtp).await;
    assert_eq!(got, reply);
    assert_eq!(from, allocation.leg_a);

    // RTCP on port + 1, both ways.
    let report = rtcp_receiver_report();
    a_rtcp
        .send_to(&report, rtcp_of(allocation.leg_a))
        .await
        .unwrap();
    let (got, from) = receive(&b_rtcp).await;
    assert_eq!(
        (got.as_slice(), from),
        (report.as_slice(), rtcp_of(allocation.leg_b))
    );
    b_rtcp
        .send_to(&report, rtcp_of(allocation.leg_b))
        .await
        .unwrap();
    let (got, from) = receive(&a_rtcp).await;
    assert_eq!(
        (got.as_slice(), from),
        (report.as_slice(), rtcp_of(allocation.leg_a))
    );

    // RFC 4733 DTMF ("5", end, volume 10, duration 800) passes as ordinary RTP.
    let dtmf = rtp(2, 101, &[5, 0x8a, 0x03, 0x20]);
    a_rtp.send_to(&dtmf, allocation.leg_a).await.unwrap();
    assert_eq!(receive(&b_rtp).await.0, dtmf);

    // A third party aiming at either leg is dropped.
    let stranger = phone().await;
    stranger.send_to(&voice, allocation.leg_a).await.unwrap();
    stranger.send_to(&voice, allocation.leg_b).await.unwrap();
    nothing_arrives(&b_rtp).await;
    nothing_arrives(&a_rtp).await;
    // A malformed datagram too.
    a_rtp.send_to(&[0x40; 20], allocation.leg_a).await.unwrap();
    nothing_arrives(&b_rtp).await;

    let stats = media.stats(allocation.session).await.unwrap();
    assert_eq!(stats.latched_a, Some(a_rtp.local_addr().unwrap()));
    assert_eq!(stats.latched_b, Some(b_rtp.local_addr().unwrap()));
    assert_eq!(stats.leg_a.packets_in, 3, "voice, RTCP, DTMF");
    assert_eq!(stats.leg_a.drops, 2, "stranger, malformed");
    assert_eq!(stats.leg_b.packets_in, 2);
    assert_eq!(stats.leg_b.packets_out, 3);
    assert_eq!(stats.leg_b.drops, 1);
    assert_eq!(stats.leg_a.bytes_in, 172 + 8 + 16);

    let last = media.release(allocation.session).await.unwrap();
    assert_eq!(last.leg_a.packets_in, 3);
}

#[tokio::test]
async fn a_phone_not_behind_nat_is_latched_only_from_its_sdp_address() {
    let (media, _events) = start(2, steady());
    let a = phone().await;
    let b = phone().await;
    // A's SDP is on another IP: a packet from 127.0.0.1 cannot be A.
    let allocation = media
        .allocate(AllocateRequest {
            call_id: "call-2@test".into(),
            leg_a: LegOptions {
                remote: Some("127.0.0.2:4000".parse().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
            leg_b: LegOptions {
                remote: Some(b.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        })
        .await
        .unwrap();
    a.send_to(&rtp(1, 8, &[0; 160]), allocation.leg_a)
        .await
        .unwrap();
    nothing_arrives(&b).await;
    let stats = media.stats(allocation.session).await.unwrap();
    assert_eq!((stats.leg_a.drops, stats.latched_a), (1, None));
}

#[tokio::test]
async fn dead_media_is_reported_once() {
    let (media, mut events) = start(
        2,
        SessionConfig {
            idle_timeout: Duration::from_millis(300),
            relatch_after: None,
        },
    );
    let a = phone().await;
    let b = phone().await;
    let allocation = media
        .allocate(AllocateRequest {
            call_id: "call-3@test".into(),
            leg_a: LegOptions {
                remote: Some(a.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
            leg_b: LegOptions {
                remote: Some(b.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        })
        .await
        .unwrap();
    a.send_to(&rtp(1, 0, &[0xff; 160]), allocation.leg_a)
        .await
        .unwrap();
    receive(&b).await;
    let event = timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("no idle report")
        .unwrap();
    let MediaEvent::MediaIdle {
        session,
        call_id,
        stats,
    } = event;
    assert_eq!(session, allocation.session);
    assert_eq!(call_id, "call-3@test");
    assert_eq!(stats.leg_a.packets_in, 1);
    assert!(
        timeout(Duration::from_millis(700), events.recv())
            .await
            .is_err(),
        "reported twice"
    );
    // Media resumes, then stops again: reported again.
    a.send_to(&rtp(2, 0, &[0xff; 160]), allocation.leg_a)
        .await
        .unwrap();
    receive(&b).await;
    let again = timeout(Duration::from_secs(3), events.recv()).await;
    assert!(matches!(again, Ok(Some(MediaEvent::MediaIdle { .. }))));
    media.release(allocation.session).await.unwrap();
}

#[tokio::test]
async fn release_frees_the_ports_and_exhaustion_is_an_error() {
    let (media, _events) = start(2, steady());
    let request = AllocateRequest {
        call_id: "call-4@test".into(),
        leg_a: LegOptions::default(),
        leg_b: LegOptions::default(),
    };
    let first = media.allocate(request.clone()).await.unwrap();
    assert_eq!(media.available_pairs(), 0);
    let refused = media.allocate(request.clone()).await;
    assert!(
        matches!(refused, Err(MediaError::Exhausted(_))),
        "{refused:?}"
    );
    // The relay holds the ports: nobody else can bind them.
    assert!(UdpSocket::bind(first.leg_a).await.is_err());

    media.release(first.session).await.unwrap();
    assert_eq!(media.available_pairs(), 2);
    assert_eq!(media.session_count(), 0);
    for addr in [
        first.leg_a,
        rtcp_of(first.leg_a),
        first.leg_b,
        rtcp_of(first.leg_b),
    ] {
        drop(UdpSocket::bind(addr).await.expect("port still bound"));
    }
    assert!(matches!(
        media.release(first.session).await,
        Err(MediaError::UnknownSession(_))
    ));
    assert!(matches!(
        media
            .update(first.session, Leg::A, LegOptions::default())
            .await,
        Err(MediaError::UnknownSession(_))
    ));
    let second = media.allocate(request).await.unwrap();
    media.release(second.session).await.unwrap();
}

#[tokio::test]
async fn ringback_replaces_the_callees_media_until_stopped() {
    use media::relay::RtpHeader;
    use media::{G711, Playback, ToneSpec};

    let (media, _events) = start(2, steady());
    let a = phone().await;
    let b = phone().await;
    let allocation = media
        .allocate(AllocateRequest {
            call_id: "call-5@test".into(),
            leg_a: LegOptions {
                remote: Some(a.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
            leg_b: LegOptions {
                remote: Some(b.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        })
        .await
        .unwrap();
    media
        .play(
            allocation.session,
            Leg::A,
            Playback::Tone {
                spec: ToneSpec::ringback_europe(),
                codec: G711::ALaw,
            },
        )
        .await
        .unwrap();
    // Early media from B does not reach A while A hears ringback.
    b.send_to(&rtp(1, 8, &[0x2a; 160]), allocation.leg_b)
        .await
        .unwrap();
    let mut previous: Option<RtpHeader> = None;
    for _ in 0..10 {
        let (packet, from) = receive(&a).await;
        assert_eq!(from, allocation.leg_a);
        assert_eq!(packet.len(), 172);
        let header = RtpHeader::parse(&packet).unwrap();
        assert_eq!(header.payload_type, 8);
        assert_ne!(&packet[12..], &[0x2a; 160][..], "B's media leaked through");
        if let Some(previous) = previous {
            assert_eq!(header.ssrc, previous.ssrc);
            assert_eq!(header.sequence, previous.sequence.wrapping_add(1));
            assert_eq!(header.timestamp, previous.timestamp.wrapping_add(160));
        }
        previous = Some(header);
    }
    // B answers: call-control stops the ringback, B's media flows.
    media
        .stop_playback(allocation.session, Leg::A)
        .await
        .unwrap();
    // Drain what the generator sent before the stop.
    while timeout(Duration::from_millis(60), a.recv_from(&mut [0u8; 2048]))
        .await
        .is_ok()
    {}
    let voice = rtp(2, 8, &[0x2a; 160]);
    b.send_to(&voice, allocation.leg_b).await.unwrap();
    assert_eq!(receive(&a).await.0, voice);
    let stats = media.release(allocation.session).await.unwrap();
    assert_eq!(stats.leg_b.drops, 1, "the early media during ringback");
}

#[tokio::test]
async fn a_phone_that_moves_is_relatched_after_its_silence() {
    let (media, _events) = start(
        2,
        SessionConfig {
            idle_timeout: Duration::from_secs(60),
            relatch_after: Some(Duration::from_millis(300)),
        },
    );
    let (a_old, a_new, b) = (phone().await, phone().await, phone().await);
    let allocation = media
        .allocate(AllocateRequest {
            call_id: "call-6@test".into(),
            leg_a: LegOptions {
                remote: Some(a_old.local_addr().unwrap()),
                behind_nat: true,
                rtcp_mux: false,
            },
            leg_b: LegOptions {
                remote: Some(b.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        })
        .await
        .unwrap();
    let voice = rtp(1, 0, &[0xff; 160]);
    a_old.send_to(&voice, allocation.leg_a).await.unwrap();
    receive(&b).await;
    // The NAT rebinds: A's packets now come from elsewhere. Refused while the old source is
    // fresh…
    a_new.send_to(&voice, allocation.leg_a).await.unwrap();
    nothing_arrives(&b).await;
    // …accepted once it has been silent for 300 ms; B's media follows A to its new address.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a_new.send_to(&voice, allocation.leg_a).await.unwrap();
    receive(&b).await;
    b.send_to(&voice, allocation.leg_b).await.unwrap();
    receive(&a_new).await;
    nothing_arrives(&a_old).await;
    let stats = media.release(allocation.session).await.unwrap();
    assert_eq!(stats.latched_a, Some(a_new.local_addr().unwrap()));
}
