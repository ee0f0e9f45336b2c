//! Two transaction layers over a virtual network that loses, duplicates and reorders
//! datagrams (seeded), on a virtual clock: transactions complete, or time out exactly when
//! the RFC timers say, and retransmissions never reach a TU twice.

mod common;

use std::time::{Duration, Instant};

use common::{Impairment, Net, Node, Tu, UAC, UAS, addr, invite, request, respond};
use sip_core::IdGenerator;
use sip_core::Transmit;
use sip_core::transaction::{Event, TransactionConfig, TransactionKey, TransactionLayer};
use sip_msg::{HeaderName, Method, Request, Response, StatusCode, Transport};

const SEEDS: u64 = 200;
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

fn lossy() -> Impairment {
    Impairment {
        loss: 0.3,
        duplicate: 0.1,
        reorder: 0.3,
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(400),
    }
}

/// A UAC that ACKs every 2xx (§13.2.2.4) and a UAS that answers every INVITE with `answer`
/// (after a 180 when it is a 2xx) and, for a 2xx, retransmits it through the Accepted
/// server transaction until the ACK (§13.3.1.4, RFC 6026) — forking a second 2xx with
/// another To tag when `fork` is set.
struct CallTu {
    uac: usize,
    uas: usize,
    answer: u16,
    fork: bool,
    invite: Request,
    ids: IdGenerator,
    ok: Option<(TransactionKey, Response)>,
    next_retransmit: Option<Instant>,
    interval: Duration,
    give_up: Option<Instant>,
    acks_at_uas: Vec<String>,
    first_final_sent: Option<Instant>,
}

impl CallTu {
    fn new(uac: usize, uas: usize, answer: u16, invite: Request) -> CallTu {
        CallTu {
            uac,
            uas,
            answer,
            fork: false,
            invite,
            ids: IdGenerator::new(99),
            ok: None,
            next_retransmit: None,
            interval: T1,
            give_up: None,
            acks_at_uas: Vec::new(),
            first_final_sent: None,
        }
    }

    fn ack_for_2xx(&mut self, response: &Response) -> Request {
        let mut ack = self.invite.clone();
        ack.method = Method::Ack;
        ack.headers.set(
            HeaderName::Via,
            format!("SIP/2.0/UDP {UAC};branch={}", self.ids.branch()),
        );
        ack.headers.set(
            HeaderName::To,
            response.headers.get(&HeaderName::To).unwrap_or_default(),
        );
        ack.headers.set(HeaderName::CSeq, "1 ACK");
        ack
    }
}

impl Tu for CallTu {
    fn on_event(&mut self, node: usize, now: Instant, layer: &mut TransactionLayer, event: &Event) {
        if node == self.uas {
            match event {
                Event::Request { key, request, .. } if request.method == Method::Invite => {
                    if self.answer >= 300 {
                        layer
                            .send_response(now, key, respond(request, self.answer, "uas"))
                            .expect("answer");
                    } else {
                        layer
                            .send_response(now, key, respond(request, 180, "uas"))
                            .expect("180");
                        let ok = respond(request, self.answer, "uas");
                        layer.send_response(now, key, ok.clone()).expect("2xx");
                        if self.fork {
                            let other = respond(request, self.answer, "uas-fork");
                            layer.send_stateless(Transmit {
                                transport: Transport::Udp,
                                destination: addr(UAC),
                                contents: other.to_bytes().into(),
                            });
                        }
                        self.ok = Some((*key, ok));
                        self.next_retransmit = Some(now + T1);
                        self.give_up = Some(now + T1 * 64);
                    }
                    self.first_final_sent = Some(now);
                }
                Event::Ack { request, .. } => {
                    let tag = request
                        .headers
                        .to_header()
                        .ok()
                        .flatten()
                        .and_then(|t| t.tag().map(str::to_owned));
                    self.acks_at_uas.push(tag.unwrap_or_default());
                    if self.acks_at_uas.iter().any(|t| t == "uas") {
                        self.next_retransmit = None;
                    }
                }
                _ => {}
            }
        } else if node == self.uac
            && let Event::Response { response, .. } | Event::StrayResponse { response, .. } = event
            && response.status.is_success()
        {
            let ack = self.ack_for_2xx(response);
            layer.send_stateless(Transmit {
                transport: Transport::Udp,
                destination: addr(UAS),
                contents: ack.to_bytes().into(),
            });
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.next_retransmit
    }

    fn on_wakeup(&mut self, now: Instant, nodes: &mut [Node]) {
        let Some((key, ok)) = &self.ok else { return };
        if self.give_up.is_some_and(|g| now >= g) {
            self.next_retransmit = None;
            return;
        }
        // The UAS core's 2xx retransmission (§13.3.1.4) through the Accepted transaction.
        let _ = nodes[self.uas].layer.send_response(now, key, ok.clone());
        self.interval = (self.interval * 2).min(T2);
        self.next_retransmit = Some(now + self.interval);
    }
}

struct Outcome {
    uac_statuses: Vec<u16>,
    uac_timeouts: Vec<Duration>,
    uas_requests: usize,
    uas_timeouts: Vec<Duration>,
    tu: CallTu,
    base: Instant,
    idle: bool,
    /// Datagrams sent and lost by the network.
    sent: u64,
    lost: u64,
}

fn run_call(seed: u64, answer: u16, imp: Impairment, transport: Transport) -> Outcome {
    let mut net = Net::new(seed, imp);
    let uac = net.add_node(UAC, TransactionConfig::default());
    let uas = net.add_node(
        UAS,
        TransactionConfig {
            id_seed: seed,
            ..TransactionConfig::default()
        },
    );
    let t = if transport == Transport::Udp {
        "UDP"
    } else {
        "TCP"
    };
    let inv = request(
        "INVITE",
        &format!("z9hG4bKseed{seed}"),
        addr(UAC),
        addr(UAS),
        t,
        &format!("call-{seed}"),
        1,
    );
    let mut tu = CallTu::new(uac, uas, answer, inv.clone());
    net.nodes[uac]
        .layer
        .send_request(net.now, inv, addr(UAS), transport)
        .expect("INVITE");
    net.run(&mut tu, Duration::from_secs(300));
    collect(net, tu, uac, uas)
}

fn collect(net: Net, tu: CallTu, uac: usize, uas: usize) -> Outcome {
    let uac_events = &net.nodes[uac].events;
    let uas_events = &net.nodes[uas].events;
    Outcome {
        uac_statuses: uac_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Response { response, .. } => Some(response.status.as_u16()),
                _ => None,
            })
            .collect(),
        uac_timeouts: uac_events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Timeout { .. }))
            .map(|(t, _)| *t)
            .collect(),
        uas_requests: uas_events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Request { .. }))
            .count(),
        uas_timeouts: uas_events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Timeout { .. }))
            .map(|(t, _)| *t)
            .collect(),
        idle: net.nodes.iter().all(|n| n.layer.transaction_count() == 0),
        base: net.base,
        sent: net.sent,
        lost: net.lost,
        tu,
    }
}

#[test]
fn invite_rejected_with_486_completes_under_30_percent_loss_or_times_out_on_time() {
    let (mut completed, mut sent, mut lost) = (0, 0, 0);
    for seed in 0..SEEDS {
        let o = run_call(seed, 486, lossy(), Transport::Udp);
        sent += o.sent;
        lost += o.lost;
        assert!(o.idle, "seed {seed}: transactions left behind");
        assert!(
            o.uas_requests <= 1,
            "seed {seed}: a retransmitted INVITE reached the UAS TU"
        );
        let finals: Vec<u16> = o
            .uac_statuses
            .iter()
            .copied()
            .filter(|s| *s >= 200)
            .collect();
        match finals.as_slice() {
            [486] => {
                assert!(o.uac_timeouts.is_empty(), "seed {seed}");
                completed += 1;
            }
            [] => assert_eq!(
                o.uac_timeouts,
                vec![T1 * 64],
                "seed {seed}: Timer B exactly at 64·T1"
            ),
            other => panic!("seed {seed}: the UAC TU saw finals {other:?}"),
        }
        // Timer H fires only when no ACK came, exactly 64·T1 after the 486 went out.
        if let (Some(sent), [h]) = (o.tu.first_final_sent, o.uas_timeouts.as_slice()) {
            assert_eq!(o.base + *h, sent + T1 * 64, "seed {seed}: Timer H");
        }
        assert!(o.uas_timeouts.len() <= 1);
    }
    assert!(
        lost * 4 > sent,
        "the network really lost about 30% ({lost}/{sent})"
    );
    assert!(
        completed >= SEEDS * 97 / 100,
        "only {completed}/{SEEDS} completed under 30% loss"
    );
}

#[test]
fn invite_answered_200_is_acked_end_to_end_under_30_percent_loss() {
    let (mut completed, mut sent, mut lost) = (0, 0, 0);
    for seed in 0..SEEDS {
        let o = run_call(seed + 10_000, 200, lossy(), Transport::Udp);
        sent += o.sent;
        lost += o.lost;
        assert!(o.idle, "seed {seed}: transactions left behind");
        assert!(o.uas_requests <= 1, "seed {seed}");
        assert!(
            o.uas_timeouts.is_empty(),
            "seed {seed}: no Timer H for a 2xx"
        );
        let got_200 = o.uac_statuses.contains(&200);
        if got_200 {
            assert!(
                o.uac_timeouts.is_empty(),
                "seed {seed}: a 2xx was seen, Timer B must not fire"
            );
        } else {
            assert!(o.uac_statuses.iter().all(|s| *s < 200), "seed {seed}");
        }
        if got_200 && o.tu.acks_at_uas.iter().any(|t| t == "uas") {
            completed += 1;
        }
    }
    assert!(
        lost * 4 > sent,
        "the network really lost about 30% ({lost}/{sent})"
    );
    assert!(
        completed >= SEEDS * 97 / 100,
        "only {completed}/{SEEDS} calls completed under 30% loss"
    );
}

#[test]
fn forked_2xx_with_different_to_tags_both_reach_the_uac_tu() {
    let mut net = Net::new(1, Impairment::PERFECT);
    let uac = net.add_node(UAC, TransactionConfig::default());
    let uas = net.add_node(UAS, TransactionConfig::default());
    let inv = invite("z9hG4bKfork", "fork");
    let mut tu = CallTu::new(uac, uas, 200, inv.clone());
    tu.fork = true;
    let key = net.nodes[uac]
        .layer
        .send_request(net.now, inv, addr(UAS), Transport::Udp)
        .unwrap();
    net.run(&mut tu, Duration::from_secs(100));
    let tags: Vec<String> = net.nodes[uac]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Response {
                key: k, response, ..
            } if *k == key && response.status == StatusCode::OK => response
                .headers
                .to_header()
                .ok()
                .flatten()
                .and_then(|t| t.tag().map(str::to_owned)),
            _ => None,
        })
        .collect();
    assert_eq!(tags, ["uas", "uas-fork"]);
    let mut acked = tu.acks_at_uas.clone();
    acked.sort();
    assert_eq!(acked, ["uas", "uas-fork"], "the UAC TU ACKed each fork");
    assert!(net.nodes.iter().all(|n| n.layer.transaction_count() == 0));
}

struct RegistrarTu {
    uas: usize,
}

impl Tu for RegistrarTu {
    fn on_event(&mut self, node: usize, now: Instant, layer: &mut TransactionLayer, event: &Event) {
        if let (true, Event::Request { key, request, .. }) = (node == self.uas, event) {
            layer
                .send_response(now, key, respond(request, 200, "reg"))
                .expect("200");
        }
    }
}

#[test]
fn register_completes_under_30_percent_loss_or_times_out_on_timer_f() {
    let mut completed = 0;
    for seed in 0..SEEDS {
        let mut net = Net::new(seed + 20_000, lossy());
        let uac = net.add_node(UAC, TransactionConfig::default());
        let uas = net.add_node(UAS, TransactionConfig::default());
        let reg = request(
            "REGISTER",
            &format!("z9hG4bKreg{seed}"),
            addr(UAC),
            addr(UAS),
            "UDP",
            &format!("r{seed}"),
            1,
        );
        net.nodes[uac]
            .layer
            .send_request(net.now, reg, addr(UAS), Transport::Udp)
            .unwrap();
        net.run(&mut RegistrarTu { uas }, Duration::from_secs(300));
        let uac_finals = net.nodes[uac]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Response { response, .. } if response.status.is_final()))
            .count();
        let uac_timeouts: Vec<Duration> = net.nodes[uac]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Timeout { .. }))
            .map(|(t, _)| *t)
            .collect();
        let uas_requests = net.nodes[uas]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Request { .. }))
            .count();
        assert!(
            uas_requests <= 1,
            "seed {seed}: a retransmission reached the registrar"
        );
        match (uac_finals, uac_timeouts.as_slice()) {
            (1, []) => completed += 1,
            (0, [f]) => assert_eq!(*f, T1 * 64, "seed {seed}: Timer F exactly at 64·T1"),
            other => panic!("seed {seed}: {other:?}"),
        }
        assert!(
            net.nodes.iter().all(|n| n.layer.transaction_count() == 0),
            "seed {seed}"
        );
    }
    assert!(
        completed >= SEEDS * 97 / 100,
        "only {completed}/{SEEDS} registrations under 30% loss"
    );
}

#[test]
fn a_black_hole_times_out_exactly_at_64_t1_for_every_seed() {
    let black_hole = Impairment {
        loss: 1.0,
        ..Impairment::PERFECT
    };
    for seed in 0..20 {
        let o = run_call(seed, 200, black_hole, Transport::Udp);
        assert_eq!(o.uac_timeouts, vec![T1 * 64]);
        assert_eq!(o.uas_requests, 0);
        assert!(o.idle);
    }
}

#[test]
fn reliable_transport_sends_each_message_once() {
    let mut net = Net::new(5, Impairment::PERFECT);
    let uac = net.add_node(UAC, TransactionConfig::default());
    let uas = net.add_node(UAS, TransactionConfig::default());
    let inv = request(
        "INVITE",
        "z9hG4bKtcp",
        addr(UAC),
        addr(UAS),
        "TCP",
        "tcp",
        1,
    );
    let mut tu = CallTu::new(uac, uas, 486, inv.clone());
    net.nodes[uac]
        .layer
        .send_request(net.now, inv, addr(UAS), Transport::Tcp)
        .unwrap();
    net.run(&mut tu, Duration::from_secs(100));
    // INVITE, 486, ACK: three datagrams, then both sides terminate at once (D = I = 0).
    assert_eq!(net.sent, 3);
    assert!(net.nodes.iter().all(|n| n.layer.transaction_count() == 0));
    let ended: Vec<Duration> = net
        .nodes
        .iter()
        .flat_map(|n| {
            n.events
                .iter()
                .filter(|(_, e)| matches!(e, Event::Terminated { .. }))
                .map(|(t, _)| *t)
        })
        .collect();
    assert!(
        ended.iter().all(|t| *t < Duration::from_millis(100)),
        "{ended:?}"
    );
}
