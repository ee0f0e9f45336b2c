//! Test harness for the transaction layer: a virtual clock, message builders, a single-layer
//! fixture, and a virtual network between layers where a seeded RNG loses, duplicates and
//! reorders datagrams. No sockets, no sleeps: time jumps to the next thing that happens.
#![allow(dead_code, unreachable_pub)] // each test file uses part of the harness

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sip_core::Transmit;
use sip_core::transaction::{Event, Input, Output, TransactionConfig, TransactionLayer};
use sip_msg::{Request, Response, SipMessage, StatusCode, Transport, parse_datagram};

/// The one wall-clock reading of the test suite; everything after is base + Durations.
#[allow(clippy::disallowed_methods)]
pub fn base_instant() -> Instant {
    Instant::now()
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

pub const UAC: &str = "192.0.2.10:5060";
pub const UAS: &str = "192.0.2.20:5060";

/// A request from `from` to `to` with one Via carrying `branch`.
pub fn request(
    method: &str,
    branch: &str,
    from: SocketAddr,
    to: SocketAddr,
    transport: &str,
    call_id: &str,
    cseq: u32,
) -> Request {
    let raw = format!(
        "{method} sip:bob@{to} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{from}>;tag={call_id}-a\r\n\
         To: <sip:bob@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match parse_datagram(raw.as_bytes()).expect("test request parses") {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

pub fn invite(branch: &str, call_id: &str) -> Request {
    request("INVITE", branch, addr(UAC), addr(UAS), "UDP", call_id, 1)
}

pub fn parse(bytes: &[u8]) -> SipMessage {
    parse_datagram(bytes).expect("emitted message parses")
}

pub fn parse_response(bytes: &[u8]) -> Response {
    match parse(bytes) {
        SipMessage::Response(r) => r,
        SipMessage::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

pub fn parse_request(bytes: &[u8]) -> Request {
    match parse(bytes) {
        SipMessage::Request(r) => r,
        SipMessage::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

pub fn respond(req: &Request, status: u16, tag: &str) -> Response {
    sip_msg::build_response(req, StatusCode::new(status).expect("status"), Some(tag))
}

/// One layer driven by hand: feed it, move the clock, look at what came out.
pub struct Fixture {
    pub base: Instant,
    pub now: Instant,
    pub layer: TransactionLayer,
    /// Everything emitted so far, with the time it came out.
    pub transmits: Vec<(Duration, Transmit)>,
    pub events: Vec<(Duration, Event)>,
}

impl Fixture {
    pub fn new(config: TransactionConfig) -> Fixture {
        let base = base_instant();
        Fixture {
            base,
            now: base,
            layer: TransactionLayer::new(config, base),
            transmits: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Drains the layer and returns the next wake-up.
    pub fn drain(&mut self) -> Instant {
        loop {
            match self.layer.poll_output() {
                Output::Transmit(t) => self.transmits.push((self.elapsed(), t)),
                Output::Event(e) => self.events.push((self.elapsed(), e)),
                Output::Timeout(t) => return t,
            }
        }
    }

    pub fn input(&mut self, input: Input) {
        self.layer.handle_input(self.now, input);
        self.drain();
    }

    pub fn receive(&mut self, bytes: impl Into<Bytes>, source: &str, transport: Transport) {
        self.input(Input::Datagram {
            transport,
            source: addr(source),
            data: bytes.into(),
        });
    }

    /// Advances by `d`, firing every timer on the way at its own instant.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.drain();
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            self.layer.handle_timeout(self.now);
        }
        self.now = end;
        self.layer.handle_timeout(end);
        self.drain();
    }

    /// Runs the clock until the layer holds no transaction (at most `limit`).
    pub fn run_until_empty(&mut self, limit: Duration) {
        let end = self.now + limit;
        while self.layer.transaction_count() > 0 && self.now < end {
            let next = self.drain().min(end);
            self.now = next.max(self.now);
            self.layer.handle_timeout(self.now);
        }
        self.drain();
    }

    pub fn take_transmits(&mut self) -> Vec<(Duration, Transmit)> {
        std::mem::take(&mut self.transmits)
    }

    pub fn take_events(&mut self) -> Vec<(Duration, Event)> {
        std::mem::take(&mut self.events)
    }
}

/// How a virtual network mistreats datagrams.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a datagram takes an extra random delay of up to `jitter`
    /// (later datagrams overtake it).
    pub reorder: f64,
    pub latency: Duration,
    pub jitter: Duration,
}

impl Impairment {
    pub const PERFECT: Impairment = Impairment {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        latency: Duration::from_millis(10),
        jitter: Duration::ZERO,
    };
}

/// The behaviour above one layer: reacts to events by calling the layer.
pub trait Tu {
    fn on_event(&mut self, node: usize, now: Instant, layer: &mut TransactionLayer, event: &Event);

    /// When the TU itself wants to act next (e.g. a UAS core retransmitting its 2xx).
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    fn on_wakeup(&mut self, _now: Instant, _nodes: &mut [Node]) {}
}

pub struct Node {
    pub addr: SocketAddr,
    pub layer: TransactionLayer,
    pub events: Vec<(Duration, Event)>,
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: SocketAddr,
    from: SocketAddr,
    transport: Transport,
    data: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Layers joined by a lossy virtual network on one virtual clock.
pub struct Net {
    pub base: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub impairment: Impairment,
    rng: StdRng,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    pub sent: u64,
    pub lost: u64,
}

impl Net {
    pub fn new(seed: u64, impairment: Impairment) -> Net {
        let base = base_instant();
        Net {
            base,
            now: base,
            nodes: Vec::new(),
            impairment,
            rng: StdRng::seed_from_u64(seed),
            in_flight: BinaryHeap::new(),
            seq: 0,
            sent: 0,
            lost: 0,
        }
    }

    pub fn add_node(&mut self, address: &str, config: TransactionConfig) -> usize {
        self.nodes.push(Node {
            addr: addr(address),
            layer: TransactionLayer::new(config, self.base),
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn route(&mut self, from: SocketAddr, t: Transmit) {
        self.sent += 1;
        let imp = self.impairment;
        let copies = if self.rng.random_bool(imp.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.random_bool(imp.loss) {
                self.lost += 1;
                continue;
            }
            let mut delay = imp.latency;
            if !imp.jitter.is_zero() && self.rng.random_bool(imp.reorder) {
                delay += imp.jitter.mul_f64(self.rng.random_range(0.0..1.0));
            }
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                at: self.now + delay,
                seq: self.seq,
                to: t.destination,
                from,
                transport: t.transport.clone(),
                data: t.contents.clone(),
            }));
        }
    }

    /// Drains every node's output (handing events to the TU, which may produce more) and
    /// returns the earliest wake-up among nodes.
    fn drain(&mut self, tu: &mut impl Tu) -> Instant {
        let mut earliest = self.now + Duration::from_secs(3600);
        for i in 0..self.nodes.len() {
            loop {
                match self.nodes[i].layer.poll_output() {
                    Output::Transmit(t) => {
                        let from = self.nodes[i].addr;
                        self.route(from, t);
                    }
                    Output::Event(e) => {
                        let (now, elapsed) = (self.now, self.elapsed());
                        tu.on_event(i, now, &mut self.nodes[i].layer, &e);
                        self.nodes[i].events.push((elapsed, e));
                    }
                    Output::Timeout(t) => {
                        earliest = earliest.min(t);
                        break;
                    }
                }
            }
        }
        earliest
    }

    /// Runs until `limit` of virtual time passed or nothing is left to do.
    pub fn run(&mut self, tu: &mut impl Tu, limit: Duration) {
        let end = self.base + limit;
        loop {
            let wake = self.drain(tu);
            let next_packet = self.in_flight.peek().map(|Reverse(p)| p.at);
            let tu_wake = tu.next_wakeup();
            let idle = self.nodes.iter().all(|n| n.layer.transaction_count() == 0);
            if idle && next_packet.is_none() && tu_wake.is_none() {
                return;
            }
            let next = [Some(wake), next_packet, tu_wake]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(wake);
            if next > end {
                self.now = end;
                return;
            }
            self.now = next.max(self.now);
            while let Some(Reverse(p)) = self.in_flight.peek() {
                if p.at > self.now {
                    break;
                }
                let Some(Reverse(p)) = self.in_flight.pop() else {
                    break;
                };
                if let Some(n) = self.nodes.iter_mut().find(|n| n.addr == p.to) {
                    n.layer.handle_input(
                        self.now,
                        Input::Datagram {
                            transport: p.transport,
                            source: p.from,
                            data: p.data,
                        },
                    );
                }
            }
            for n in &mut self.nodes {
                n.layer.handle_timeout(self.now);
            }
            if tu.next_wakeup().is_some_and(|t| t <= self.now) {
                tu.on_wakeup(self.now, &mut self.nodes);
            }
        }
    }
}

/// True when `bytes` parse as a SIP message.
pub fn parse_datagram_ok(bytes: &[u8]) -> bool {
    parse_datagram(bytes).is_ok()
}
