//! One behaviour, two buses: every case below is written once against `&dyn Bus` and run
//! against the in-process bus and against NATS (a real `nats-server` started by testkit; if
//! it cannot start, the test fails with the harness error). The NATS-only case kills and
//! restarts the server to check that the client reconnects and delivery resumes.
//!
//! Every wait is bounded by `tokio::time::timeout` or a deadline.

// The cases are plain async fns called from the generated #[tokio::test]s, which clippy's
// `allow-unwrap-in-tests` does not see as tests.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bus::{
    Bus, BusError, BusHeaders, BusMessage, InProcessBus, InProcessOptions, NatsBus, NatsOptions,
    Subscription, TraceContext,
};
use bytes::Bytes;
use testkit::nats::NatsServer;
use tokio::time::{Instant, timeout};

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(5);

/// A bus under test and whatever must outlive it.
struct Fixture {
    bus: Arc<dyn Bus>,
    server: Option<NatsServer>,
}

async fn in_process_bus(capacity: usize) -> Fixture {
    Fixture {
        bus: Arc::new(InProcessBus::new(InProcessOptions {
            subscription_capacity: capacity,
            ..InProcessOptions::default()
        })),
        server: None,
    }
}

async fn nats_bus(capacity: usize) -> Fixture {
    let server = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .expect("harness thread")
        .unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
    let mut options = NatsOptions::new("conformance", vec![server.url()]);
    options.subscription_capacity = capacity;
    let bus = NatsBus::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", server.url()));
    Fixture {
        bus: Arc::new(bus),
        server: Some(server),
    }
}

async fn in_process() -> Fixture {
    in_process_bus(bus::DEFAULT_SUBSCRIPTION_CAPACITY).await
}

async fn nats() -> Fixture {
    nats_bus(bus::DEFAULT_SUBSCRIPTION_CAPACITY).await
}

async fn in_process_small() -> Fixture {
    in_process_bus(cases::SMALL_CAPACITY).await
}

async fn nats_small() -> Fixture {
    nats_bus(cases::SMALL_CAPACITY).await
}

async fn next(sub: &mut Subscription) -> BusMessage {
    timeout(WAIT, sub.next())
        .await
        .expect("a message within the wait")
        .expect("subscription open")
}

fn text(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

mod cases {
    use super::*;

    pub(crate) const SMALL_CAPACITY: usize = 16;

    pub(crate) async fn publish_subscribe_keeps_order_per_publisher(bus: Arc<dyn Bus>) {
        let mut sub = bus.subscribe("calanque.v1.test.event").await.unwrap();
        let publishers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    for i in 0..200 {
                        bus.publish(
                            "calanque.v1.test.event",
                            BusHeaders::new(),
                            text(&format!("{name}:{i}")),
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for p in publishers {
            timeout(WAIT, p).await.unwrap().unwrap();
        }
        bus.flush().await.unwrap();
        let mut last = [-1i64, -1];
        for _ in 0..400 {
            let m = next(&mut sub).await;
            assert_eq!(m.subject, "calanque.v1.test.event");
            assert_eq!(m.reply_to, None);
            assert!(m.headers.is_empty());
            let body = String::from_utf8(m.payload.to_vec()).unwrap();
            let (name, i) = body.split_once(':').unwrap();
            let slot = usize::from(name == "b");
            let i: i64 = i.parse().unwrap();
            assert_eq!(i, last[slot] + 1, "{name} out of order");
            last[slot] = i;
        }
        assert_eq!(last, [199, 199]);
    }

    /// Publishes each subject in turn, then `end` (which must match); returns the subjects the
    /// subscription received up to `end`. Non-matching subjects show up as missing, in order.
    async fn received_of(
        bus: &dyn Bus,
        pattern: &str,
        subjects: &[&str],
        end: &str,
    ) -> Vec<String> {
        let mut sub = bus.subscribe(pattern).await.unwrap();
        for s in subjects.iter().chain([&end]) {
            bus.publish(s, BusHeaders::new(), Bytes::new())
                .await
                .unwrap();
        }
        bus.flush().await.unwrap();
        let mut got = Vec::new();
        for _ in 0..=subjects.len() {
            let m = next(&mut sub).await;
            let done = m.subject == end;
            got.push(m.subject);
            if done {
                break;
            }
        }
        got
    }

    pub(crate) async fn star_matches_one_token(bus: Arc<dyn Bus>) {
        let got = received_of(
            &*bus,
            "w.*.x",
            &["w.a.x", "w.a.b.x", "w.x", "w.b.x", "v.a.x", "w.a.y"],
            "w.end.x",
        )
        .await;
        assert_eq!(got, ["w.a.x", "w.b.x", "w.end.x"]);
    }

    pub(crate) async fn gt_matches_the_rest(bus: Arc<dyn Bus>) {
        let got = received_of(
            &*bus,
            "g.>",
            &["g", "g.a", "g.a.b.c", "h.a", "gg.a"],
            "g.end",
        )
        .await;
        assert_eq!(got, ["g.a", "g.a.b.c", "g.end"]);
    }

    pub(crate) async fn queue_group_gives_each_message_to_exactly_one_member(bus: Arc<dyn Bus>) {
        const N: usize = 1000;
        let mut members = Vec::new();
        for _ in 0..3 {
            members.push(bus.queue_subscribe("q.work", "workers").await.unwrap());
        }
        let mut observer = bus.subscribe("q.work").await.unwrap();
        for i in 0..N {
            bus.publish("q.work", BusHeaders::new(), text(&i.to_string()))
                .await
                .unwrap();
        }
        bus.flush().await.unwrap();

        let mut seen = HashSet::new();
        let mut per_member = [0usize; 3];
        let deadline = Instant::now() + WAIT;
        while seen.len() < N && Instant::now() < deadline {
            let mut progressed = false;
            for (k, member) in members.iter_mut().enumerate() {
                while let Some(m) = member.try_next() {
                    let i: usize = String::from_utf8(m.payload.to_vec())
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(seen.insert(i), "message {i} delivered twice");
                    per_member[k] += 1;
                    progressed = true;
                }
            }
            if !progressed {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(
            seen.len(),
            N,
            "every message reaches one member: {per_member:?}"
        );
        assert_eq!(per_member.iter().sum::<usize>(), N);
        assert!(
            per_member.iter().all(|&n| n > 0),
            "all members used: {per_member:?}"
        );
        // The plain subscriber beside the group still sees every message.
        for _ in 0..N {
            next(&mut observer).await;
        }
        // Nothing more trickles in afterwards (no duplicate after the count was reached).
        tokio::time::sleep(Duration::from_millis(50)).await;
        for member in &mut members {
            assert!(member.try_next().is_none());
        }
        assert!(members.iter().all(|m| m.dropped() == 0));
    }

    pub(crate) async fn request_reply_carries_headers_and_trace_context(bus: Arc<dyn Bus>) {
        let mut service = bus
            .queue_subscribe("calanque.v1.echo.get", "echo")
            .await
            .unwrap();
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
        let responder_bus = bus.clone();
        let responder = tokio::spawn(async move {
            let request = next(&mut service).await;
            let mut headers = BusHeaders::new();
            if let Some(ctx) = TraceContext::extract(&request.headers) {
                ctx.child().inject(&mut headers);
            }
            headers.insert("x-responder", "echo-1");
            let mut body = request.payload.to_vec();
            body.reverse();
            responder_bus
                .reply(&request, headers, Bytes::from(body))
                .await
                .unwrap();
            let _ = seen_tx.send(request);
        });

        let ctx = TraceContext::new_root(true);
        let mut headers = BusHeaders::new();
        ctx.inject(&mut headers);
        headers.insert("x-tenant", "city-of-marseille");
        headers.insert("tracestate", "calanque=1");
        let reply = bus
            .request("calanque.v1.echo.get", headers.clone(), text("abc"), WAIT)
            .await
            .unwrap();
        assert_eq!(reply.payload, text("cba"));
        assert_eq!(reply.headers.get("x-responder"), Some("echo-1"));
        let reply_ctx = TraceContext::extract(&reply.headers).expect("traceparent in the reply");
        assert_eq!(reply_ctx.trace_id, ctx.trace_id, "one trace across the bus");
        assert_ne!(reply_ctx.span_id, ctx.span_id);

        let request = timeout(WAIT, seen_rx).await.unwrap().unwrap();
        timeout(WAIT, responder).await.unwrap().unwrap();
        assert_eq!(request.subject, "calanque.v1.echo.get");
        assert!(request.reply_to.is_some());
        assert_eq!(TraceContext::extract(&request.headers), Some(ctx));
        for (name, value) in &headers.0 {
            assert_eq!(request.headers.get(name), Some(value.as_str()), "{name}");
        }
        assert_eq!(request.headers.0.len(), headers.0.len());

        // A message that was not a request cannot be answered.
        let not_a_request = BusMessage {
            reply_to: None,
            ..request
        };
        assert!(matches!(
            bus.reply(&not_a_request, BusHeaders::new(), Bytes::new())
                .await,
            Err(BusError::NoReplySubject)
        ));
    }

    pub(crate) async fn request_times_out_when_nobody_answers(bus: Arc<dyn Bus>) {
        let _silent = bus.subscribe("t.silent").await.unwrap();
        bus.flush().await.unwrap();
        let wait = Duration::from_millis(200);
        let started = Instant::now();
        let result = bus
            .request("t.silent", BusHeaders::new(), Bytes::new(), wait)
            .await;
        let elapsed = started.elapsed();
        match result {
            Err(BusError::Timeout { subject, timeout }) => {
                assert_eq!(subject, "t.silent");
                assert_eq!(timeout, wait);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    pub(crate) async fn request_without_subscriber_has_no_responders(bus: Arc<dyn Bus>) {
        let started = Instant::now();
        let result = bus
            .request("nobody.home", BusHeaders::new(), Bytes::new(), WAIT)
            .await;
        assert!(
            matches!(&result, Err(BusError::NoResponders(s)) if s == "nobody.home"),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered fast, not by timeout"
        );
    }

    pub(crate) async fn dropping_a_subscription_stops_delivery(bus: Arc<dyn Bus>) {
        let mut kept = bus.subscribe("d.x").await.unwrap();
        let dropped = bus.subscribe("d.x").await.unwrap();
        // While a silent subscriber exists, a request times out instead of failing fast.
        let probe = Duration::from_millis(100);
        let only = bus.subscribe("d.only").await.unwrap();
        bus.flush().await.unwrap();
        assert!(matches!(
            bus.request("d.only", BusHeaders::new(), Bytes::new(), probe)
                .await,
            Err(BusError::Timeout { .. })
        ));
        drop(only);
        drop(dropped);
        // The bus notices: once the unsubscription is through, nobody has interest.
        let deadline = Instant::now() + WAIT;
        let mut gone = false;
        while Instant::now() < deadline {
            match bus
                .request("d.only", BusHeaders::new(), Bytes::new(), probe)
                .await
            {
                Err(BusError::NoResponders(_)) => {
                    gone = true;
                    break;
                }
                Err(BusError::Timeout { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            gone,
            "the dropped subscription still had interest after {WAIT:?}"
        );
        // The other subscription on the same subject is unaffected.
        bus.publish("d.x", BusHeaders::new(), text("still here"))
            .await
            .unwrap();
        assert_eq!(next(&mut kept).await.payload, text("still here"));
    }

    pub(crate) async fn invalid_subjects_and_headers_are_rejected(bus: Arc<dyn Bus>) {
        for subject in ["", "a..b", "a b", ".a", "a.", "a.*", "a.>", "a*b", "a\r\nb"] {
            let r = bus.publish(subject, BusHeaders::new(), Bytes::new()).await;
            assert!(
                matches!(r, Err(BusError::InvalidSubject(_))),
                "publish {subject:?}: {r:?}"
            );
            let r = bus
                .request(subject, BusHeaders::new(), Bytes::new(), WAIT)
                .await;
            assert!(
                matches!(r, Err(BusError::InvalidSubject(_))),
                "request {subject:?}: {r:?}"
            );
        }
        for subject in ["", "a..b", "a b", "a.>.b", ">.a", "a*", "a.b>"] {
            let r = bus.subscribe(subject).await;
            assert!(
                matches!(r, Err(BusError::InvalidSubject(_))),
                "subscribe {subject:?}"
            );
            let r = bus.queue_subscribe(subject, "g").await;
            assert!(
                matches!(r, Err(BusError::InvalidSubject(_))),
                "queue {subject:?}"
            );
        }
        for group in ["", "a b", "a\tb"] {
            let r = bus.queue_subscribe("ok.subject", group).await;
            assert!(
                matches!(r, Err(BusError::InvalidQueueGroup(_))),
                "group {group:?}"
            );
        }
        for (name, value) in [
            ("bad name", "v"),
            ("bad:name", "v"),
            ("x-ok", "line\r\nbreak"),
        ] {
            let headers = BusHeaders(vec![(name.to_owned(), value.to_owned())]);
            let r = bus.publish("ok.subject", headers, Bytes::new()).await;
            assert!(
                matches!(r, Err(BusError::InvalidHeader { .. })),
                "header {name:?}: {r:?}"
            );
        }
    }

    pub(crate) async fn payload_bytes_are_preserved(bus: Arc<dyn Bus>) {
        let mut sub = bus.subscribe("p.bytes").await.unwrap();
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        let large: Vec<u8> = (0..512 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let payloads = [
            Bytes::from(all_bytes),
            Bytes::new(),
            Bytes::from_static(b"\r\n\r\nPUB x 1\r\n\0"),
            Bytes::from(large),
        ];
        for p in &payloads {
            bus.publish("p.bytes", BusHeaders::new(), p.clone())
                .await
                .unwrap();
        }
        bus.flush().await.unwrap();
        for p in &payloads {
            let m = next(&mut sub).await;
            assert_eq!(m.payload.len(), p.len());
            assert!(m.payload == *p, "payload of {} bytes changed", p.len());
        }
        // Over the 1 MiB message limit: refused, not truncated.
        let too_big = Bytes::from(vec![7u8; 2 * 1024 * 1024]);
        let r = bus.publish("p.bytes", BusHeaders::new(), too_big).await;
        assert!(
            matches!(r, Err(BusError::PayloadTooLarge { size, limit }) if size >= 2 * 1024 * 1024 && limit < size),
            "{r:?}"
        );
    }

    /// With a subscription capacity of [`SMALL_CAPACITY`], a subscriber that does not read
    /// keeps the first messages and loses (and counts) the rest; the publisher never blocks.
    pub(crate) async fn slow_consumer_loses_and_counts_overflow(bus: Arc<dyn Bus>) {
        const SENT: usize = 100;
        let mut slow = bus.subscribe("s.slow").await.unwrap();
        for i in 0..SENT {
            timeout(
                WAIT,
                bus.publish("s.slow", BusHeaders::new(), text(&i.to_string())),
            )
            .await
            .expect("publish does not block on a slow consumer")
            .unwrap();
        }
        bus.flush().await.unwrap();
        let expected_drops = (SENT - SMALL_CAPACITY) as u64;
        let deadline = Instant::now() + WAIT;
        while slow.dropped() < expected_drops && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(slow.dropped(), expected_drops);
        for i in 0..SMALL_CAPACITY {
            assert_eq!(next(&mut slow).await.payload, text(&i.to_string()));
        }
        assert!(slow.try_next().is_none());
        // Room again: delivery resumes.
        bus.publish("s.slow", BusHeaders::new(), text("after"))
            .await
            .unwrap();
        assert_eq!(next(&mut slow).await.payload, text("after"));
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:ident, $small:ident) => {
        mod $backend {
            use super::*;

            conformance!(@cases $fixture:
                publish_subscribe_keeps_order_per_publisher,
                star_matches_one_token,
                gt_matches_the_rest,
                queue_group_gives_each_message_to_exactly_one_member,
                request_reply_carries_headers_and_trace_context,
                request_times_out_when_nobody_answers,
                request_without_subscriber_has_no_responders,
                dropping_a_subscription_stops_delivery,
                invalid_subjects_and_headers_are_rejected,
                payload_bytes_are_preserved,
            );
            conformance!(@cases $small: slow_consumer_loses_and_counts_overflow,);
        }
    };
    (@cases $fixture:ident: $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture().await;
                timeout(Duration::from_secs(30), cases::$case(fixture.bus.clone()))
                    .await
                    .expect("case finishes within 30 s");
                drop(fixture.server);
            }
        )*
    };
}

conformance!(in_process_bus_conformance, in_process, in_process_small);
conformance!(nats_bus_conformance, nats, nats_small);

/// NATS only: the server dies and comes back on the same port; the client reconnects by itself,
/// re-subscribes, and delivery resumes on the same `Subscription` within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_reconnects_after_server_restart() {
    let Fixture { bus, server } = nats().await;
    let mut server = server.expect("nats fixture has a server");
    let mut sub = bus.subscribe("r.events").await.unwrap();
    bus.publish("r.events", BusHeaders::new(), text("before"))
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload, text("before"));

    tokio::task::block_in_place(|| server.kill());
    tokio::task::block_in_place(|| server.restart())
        .unwrap_or_else(|e| panic!("nats-server did not restart: {e}"));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let mut resumed = None;
    for attempt in 0u32.. {
        if Instant::now() >= deadline {
            break;
        }
        // Publishing while reconnecting may fail or be buffered; either is fine here.
        let probe = format!("probe-{attempt}");
        let _ = bus
            .publish("r.events", BusHeaders::new(), text(&probe))
            .await;
        if let Ok(Some(m)) = timeout(Duration::from_millis(200), sub.next()).await {
            resumed = Some((m, started.elapsed()));
            break;
        }
    }
    let (message, after) = resumed.unwrap_or_else(|| {
        panic!(
            "no delivery within 10 s of the restart; server log:\n{}",
            server.log_tail(20)
        )
    });
    assert!(
        String::from_utf8_lossy(&message.payload).starts_with("probe-"),
        "{message:?}"
    );
    // Requests work again too.
    let mut service = bus.subscribe("r.ping").await.unwrap();
    let responder_bus = bus.clone();
    let responder = tokio::spawn(async move {
        let request = next(&mut service).await;
        responder_bus
            .reply(&request, BusHeaders::new(), text("pong"))
            .await
            .unwrap();
    });
    let reply = bus
        .request("r.ping", BusHeaders::new(), text("ping"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.payload, text("pong"));
    timeout(WAIT, responder).await.unwrap().unwrap();
    eprintln!("delivery resumed {after:?} after the restart");
}
