//! The control API over the bus: a `MediaService` served by `media::bus::serve` on the
//! in-process bus and on a real `nats-server` (testkit), driven through `MediaClient` as
//! call-control drives it, with fake phones (plain UDP sockets on loopback) on both legs.
//!
//! Every wait is bounded by a timeout.

// The cases are plain async fns called from the generated #[tokio::test]s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders, InProcessBus, InProcessOptions, NatsBus, NatsOptions};
use bytes::Bytes;
use media::bus::serve;
use media::relay::{Leg, LegOptions, SessionConfig, SessionId};
use media::{
    AllocateRequest, G711, MediaClient, MediaConfig, MediaControl, MediaError, MediaEvent,
    Playback, ToneSpec,
};
use proto::Message as _;
use proto::subjects::{self, types};
use proto::v1;
use testkit::nats::NatsServer;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// The client's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A bus under test and whatever must outlive it.
struct Fixture {
    bus: Arc<dyn Bus>,
    _server: Option<NatsServer>,
}

fn in_process() -> Fixture {
    Fixture {
        bus: Arc::new(InProcessBus::new(InProcessOptions::default())),
        _server: None,
    }
}

async fn nats() -> Fixture {
    let server = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .expect("harness thread")
        .unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
    let bus = NatsBus::connect(NatsOptions::new("media-bus-test", vec![server.url()]))
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", server.url()));
    Fixture {
        bus: Arc::new(bus),
        _server: Some(server),
    }
}

/// `pairs` port pairs somewhere in 20000–59999 (tests run in parallel; a taken pair is
/// skipped by the service).
fn config(pairs: u16, idle_timeout: Duration) -> MediaConfig {
    let base = 20_000 + 2 * rand::random_range(0..(20_000 - pairs));
    MediaConfig {
        port_first: base,
        port_last: base + 2 * pairs - 1,
        session: SessionConfig {
            idle_timeout,
            relatch_after: None,
        },
        ..MediaConfig::default()
    }
}

/// The datacenter every test replica says it is in.
const DATACENTER: &str = "dc-test";

/// A replica named `media_id` served on `bus`, in [`DATACENTER`].
async fn replica(
    bus: &Arc<dyn Bus>,
    media_id: &str,
    pairs: u16,
    idle_timeout: Duration,
) -> JoinHandle<()> {
    let (service, events) = media::start(config(pairs, idle_timeout)).unwrap();
    serve(
        Arc::new(service),
        events,
        media_id,
        DATACENTER,
        Arc::clone(bus),
    )
    .await
    .unwrap()
}

async fn phone() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn rtp(sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
    p[2..4].copy_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(payload);
    p
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

/// Allocate at the INVITE (A's SDP known), RTP both ways once B answered (update), stats,
/// release; then the session is unknown.
async fn a_call_through_the_bus(fixture: Fixture) {
    let _replica = replica(&fixture.bus, "media-1", 4, Duration::from_secs(60)).await;
    let client = MediaClient::new(Arc::clone(&fixture.bus), REQUEST_TIMEOUT);
    let (a, b) = (phone().await, phone().await);

    let remote = client
        .allocate_remote(AllocateRequest {
            call_id: "call-1@bus".into(),
            leg_a: LegOptions {
                remote: Some(a.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
            leg_b: LegOptions::default(),
        })
        .await
        .unwrap();
    assert_eq!(remote.media_id, "media-1");
    // The allocation names the relay's datacenter: stored with the call, a survivor knows
    // whether the relay went down with a lost datacenter (ADR 0020).
    assert_eq!(remote.datacenter, DATACENTER);
    let allocation = remote.allocation;
    assert_eq!(client.owner(allocation.session).as_deref(), Some("media-1"));
    assert_eq!(
        client.owner_datacenter(allocation.session).as_deref(),
        Some(DATACENTER)
    );
    assert!(allocation.leg_a.ip().is_loopback());
    assert_eq!(allocation.leg_a.port() % 2, 0);
    assert_ne!(allocation.leg_a, allocation.leg_b);

    // B answers.
    client
        .update(
            allocation.session,
            Leg::B,
            LegOptions {
                remote: Some(b.local_addr().unwrap()),
                behind_nat: false,
                rtcp_mux: false,
            },
        )
        .await
        .unwrap();

    let voice = rtp(1, &[0xd5; 160]);
    a.send_to(&voice, allocation.leg_a).await.unwrap();
    let (got, from) = receive(&b).await;
    assert_eq!((got, from), (voice.clone(), allocation.leg_b));
    let reply = rtp(1, &[0x55; 160]);
    b.send_to(&reply, allocation.leg_b).await.unwrap();
    let (got, from) = receive(&a).await;
    assert_eq!((got, from), (reply.clone(), allocation.leg_a));

    let stats = client.stats(allocation.session).await.unwrap();
    assert_eq!(stats.leg_a.packets_in, 1);
    assert_eq!(stats.leg_b.packets_in, 1);
    assert_eq!(stats.leg_a.packets_out, 1);
    assert_eq!(stats.leg_a.bytes_in, voice.len() as u64);
    assert_eq!(stats.latched_a, Some(a.local_addr().unwrap()));
    assert_eq!(stats.latched_b, Some(b.local_addr().unwrap()));

    // Ringback to A over the bus replaces B's RTP, until stopped.
    client
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
    let (tone, from) = receive(&a).await;
    assert_eq!(from, allocation.leg_a);
    assert_eq!(tone[1] & 0x7f, 8, "PCMA payload type");
    client
        .stop_playback(allocation.session, Leg::A)
        .await
        .unwrap();

    let last = client.release(allocation.session).await.unwrap();
    assert_eq!(last.leg_a.packets_in, 1);
    assert_eq!(client.owner(allocation.session), None);
    // The ports are closed: nothing is relayed any more.
    a.send_to(&voice, allocation.leg_a).await.unwrap();
    let mut buf = [0u8; 2048];
    let late = timeout(Duration::from_millis(200), b.recv_from(&mut buf)).await;
    assert!(late.is_err(), "relayed after release: {late:?}");

    // Unknown to the client (no route): refused without asking anyone.
    assert!(matches!(
        client.stats(allocation.session).await,
        Err(MediaError::UnknownSession(s)) if s == allocation.session
    ));
    // Routed to its replica, which no longer knows it.
    client.adopt(allocation.session, "media-1", "dc-adopted");
    assert_eq!(
        client.owner_datacenter(allocation.session).as_deref(),
        Some("dc-adopted")
    );
    assert!(matches!(
        client.stats(allocation.session).await,
        Err(MediaError::UnknownSession(s)) if s == allocation.session
    ));
    assert!(matches!(
        client.release(allocation.session).await,
        Err(MediaError::UnknownSession(_))
    ));
    assert_eq!(client.owner(allocation.session), None);
    assert!(matches!(
        client
            .update(SessionId(12345), Leg::B, LegOptions::default())
            .await,
        Err(MediaError::UnknownSession(_))
    ));
}

/// With no media replica at all, allocation fails as Unavailable within the timeout; so do
/// requests for a session whose replica is gone.
async fn no_replica_is_unavailable(fixture: Fixture) {
    let timeout_of = Duration::from_millis(300);
    let client = MediaClient::new(Arc::clone(&fixture.bus), timeout_of);
    let started = Instant::now();
    let result = timeout(
        Duration::from_secs(3),
        client.allocate(AllocateRequest {
            call_id: "call-2@bus".into(),
            leg_a: LegOptions::default(),
            leg_b: LegOptions::default(),
        }),
    )
    .await
    .expect("the client gave up within its timeout");
    assert!(
        matches!(result, Err(MediaError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < timeout_of + Duration::from_secs(1));

    client.adopt(SessionId(7), "media-gone", "");
    let result = timeout(Duration::from_secs(3), client.release(SessionId(7)))
        .await
        .expect("the client gave up within its timeout");
    assert!(
        matches!(result, Err(MediaError::Unavailable(_))),
        "{result:?}"
    );
    // Kept for a retry once the replica is back.
    assert_eq!(client.owner(SessionId(7)).as_deref(), Some("media-gone"));
}

/// Two replicas share allocations; each session's later requests reach its owner; an
/// exhausted replica makes the client ask again.
async fn requests_reach_the_owning_replica(fixture: Fixture) {
    let one = replica(&fixture.bus, "media-a", 1, Duration::from_secs(60)).await;
    let two = replica(&fixture.bus, "media-b", 1, Duration::from_secs(60)).await;
    let client = MediaClient::new(Arc::clone(&fixture.bus), REQUEST_TIMEOUT);
    let request = || AllocateRequest {
        call_id: "call-3@bus".into(),
        leg_a: LegOptions::default(),
        leg_b: LegOptions::default(),
    };
    // Each replica holds one pair, a session takes two: each replica fits zero sessions…
    let refused = client.allocate(request()).await;
    assert!(
        matches!(refused, Err(MediaError::Exhausted(_))),
        "{refused:?}"
    );
    for handle in [one, two] {
        handle.abort();
        let _ = handle.await;
    }

    // …so with two pairs each, there is room for exactly one session per replica.
    let bus = &fixture.bus;
    let one = replica(bus, "media-c", 2, Duration::from_secs(60)).await;
    let two = replica(bus, "media-d", 2, Duration::from_secs(60)).await;
    let mut owners = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..2 {
        // Either replica may take it; the full one makes the client ask again (up to 3
        // attempts, which may all land on the full one: 1 in 8), so the test asks a few times.
        let mut remote = None;
        for _ in 0..10 {
            match client.allocate_remote(request()).await {
                Ok(allocated) => {
                    remote = Some(allocated);
                    break;
                }
                Err(MediaError::Exhausted(_)) => {}
                Err(error) => panic!("{error}"),
            }
        }
        let remote = remote.expect("a replica with room");
        owners.push(remote.media_id.clone());
        sessions.push(remote.allocation.session);
    }
    owners.sort();
    assert_eq!(owners, ["media-c", "media-d"]);
    assert_ne!(sessions[0], sessions[1]);
    for session in &sessions {
        client.stats(*session).await.unwrap();
    }
    for session in sessions {
        client.release(session).await.unwrap();
    }
    one.abort();
    two.abort();
}

/// Dead media reaches subscribers of the event subject with the owner's media id.
async fn idle_events_are_published(fixture: Fixture) {
    let mut events = MediaClient::subscribe_events(fixture.bus.as_ref(), Some("call-control"))
        .await
        .unwrap();
    let _replica = replica(&fixture.bus, "media-idle", 2, Duration::from_millis(200)).await;
    let client = MediaClient::new(Arc::clone(&fixture.bus), REQUEST_TIMEOUT);
    let allocation = client
        .allocate(AllocateRequest {
            call_id: "call-4@bus".into(),
            leg_a: LegOptions::default(),
            leg_b: LegOptions::default(),
        })
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an idle event")
        .expect("subscription open");
    assert_eq!(
        message.headers.get(subjects::TYPE_HEADER),
        Some(types::MEDIA_EVENT)
    );
    let event = MediaClient::decode_event(&message).unwrap();
    assert_eq!(event.media_id, "media-idle");
    let MediaEvent::MediaIdle {
        session, call_id, ..
    } = event.event;
    assert_eq!(session, allocation.session);
    assert_eq!(call_id, "call-4@bus");
    client.release(allocation.session).await.unwrap();
}

/// What is not a MediaRequest gets a BusError; a non-allocation on the allocate subject and
/// a malformed address get INVALID replies.
async fn malformed_requests_are_refused(fixture: Fixture) {
    let _replica = replica(&fixture.bus, "media-strict", 2, Duration::from_secs(60)).await;
    let mut headers = BusHeaders::new();
    headers.insert(subjects::TYPE_HEADER, types::GET_REQUEST);
    let reply = fixture
        .bus
        .request(
            &subjects::media_control("media-strict"),
            headers,
            Bytes::from_static(b"\x08\x01"),
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        reply.headers.get(subjects::TYPE_HEADER),
        Some(types::BUS_ERROR)
    );
    let error = v1::BusError::decode(reply.payload.as_ref()).unwrap();
    assert_eq!(error.code, v1::BusErrorCode::InvalidArgument as i32);

    let mut headers = BusHeaders::new();
    headers.insert(subjects::TYPE_HEADER, types::MEDIA_REQUEST);
    let stats = v1::MediaRequest {
        request: Some(v1::media_request::Request::Stats(v1::MediaStatsRequest {
            session_id: 1,
        })),
    };
    let reply = fixture
        .bus
        .request(
            subjects::MEDIA_ALLOCATE,
            headers.clone(),
            Bytes::from(stats.encode_to_vec()),
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        reply.headers.get(subjects::TYPE_HEADER),
        Some(types::BUS_ERROR)
    );

    let bad = v1::MediaRequest {
        request: Some(v1::media_request::Request::Allocate(v1::MediaAllocate {
            call_id: "x".into(),
            leg_a: Some(v1::MediaLegOptions {
                remote: "not-an-address".into(),
                ..Default::default()
            }),
            leg_b: None,
        })),
    };
    let reply = fixture
        .bus
        .request(
            subjects::MEDIA_ALLOCATE,
            headers,
            Bytes::from(bad.encode_to_vec()),
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        reply.headers.get(subjects::TYPE_HEADER),
        Some(types::MEDIA_REPLY)
    );
    let reply = v1::MediaReply::decode(reply.payload.as_ref()).unwrap();
    let Some(v1::media_reply::Reply::Error(error)) = reply.reply else {
        panic!("{reply:?}");
    };
    assert_eq!(error.kind, v1::MediaErrorKind::Invalid as i32);
}

#[tokio::test]
async fn serve_refuses_a_media_id_that_is_not_one_token() {
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(InProcessOptions::default()));
    let (service, events) = media::start(config(2, Duration::from_secs(60))).unwrap();
    assert!(
        serve(Arc::new(service), events, "a.b", "", bus)
            .await
            .is_err()
    );
}

macro_rules! on_both_buses {
    ($($case:ident),+ $(,)?) => {
        mod in_process_bus {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::in_process()).await;
                }
            )+
        }
        mod nats_bus {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::nats().await).await;
                }
            )+
        }
    };
}

on_both_buses!(
    a_call_through_the_bus,
    no_replica_is_unavailable,
    requests_reach_the_owning_replica,
    idle_events_are_published,
    malformed_requests_are_refused,
);
