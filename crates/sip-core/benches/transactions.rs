//! Complete transactions through two sans-IO transaction layers on one thread: every message
//! is printed to bytes and parsed again on each hop, as on a wire, and the clock (virtual,
//! 1 ms per transaction) runs until both sides have terminated.
//!
//! - `invite_200`: INVITE → 180 → 200, the TU's ACK for the 2xx, Timers L/M;
//! - `invite_486`: INVITE → 486 → ACK (generated and absorbed by the layers), Timers D/I;
//! - `register_200`: REGISTER → 200, Timers K/J.
//!
//! One "transaction" below is a client transaction and its server transaction, both run to
//! Terminated. Run: `cargo bench -p sip-core --bench transactions`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sip_core::IdGenerator;
use sip_core::Transmit;
use sip_core::transaction::{Event, Input, Output, TransactionConfig, TransactionLayer};
use sip_msg::{
    HeaderName, Method, Request, SipMessage, StatusCode, Transport, build_response, parse_datagram,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Invite200,
    Invite486,
    Register200,
}

const UAC: &str = "192.0.2.10:5060";
const UAS: &str = "192.0.2.20:5060";

struct Pair {
    uac: TransactionLayer,
    uas: TransactionLayer,
    uac_addr: SocketAddr,
    uas_addr: SocketAddr,
    now: Instant,
    ids: IdGenerator,
    template: Request,
    scenario: Scenario,
    terminated: u64,
    finals_at_uac: u64,
}

fn template(method: &str) -> Request {
    let raw = format!(
        "{method} sip:bob@{UAS} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC};branch=z9hG4bKtemplate\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: template@192.0.2.10\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:alice@{UAC};transport=udp>\r\n\
         User-Agent: calanque-bench\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         Content-Type: application/sdp\r\n\r\n\
         v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
         c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    match parse_datagram(raw.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("bench template does not parse: {other:?}"),
    }
}

impl Pair {
    fn new(scenario: Scenario, start: Instant) -> Pair {
        let config = TransactionConfig::default();
        Pair {
            uac: TransactionLayer::new(config.clone(), start),
            uas: TransactionLayer::new(config, start),
            uac_addr: UAC.parse().expect("addr"),
            uas_addr: UAS.parse().expect("addr"),
            now: start,
            ids: IdGenerator::new(7),
            template: template(if scenario == Scenario::Register200 {
                "REGISTER"
            } else {
                "INVITE"
            }),
            scenario,
            terminated: 0,
            finals_at_uac: 0,
        }
    }

    /// Starts one transaction and runs the exchange until both layers are quiet.
    fn one(&mut self) {
        self.now += Duration::from_millis(1);
        let mut req = self.template.clone();
        let branch = self.ids.branch();
        req.headers.set(
            HeaderName::Via,
            format!("SIP/2.0/UDP {UAC};branch={branch}"),
        );
        req.headers
            .set(HeaderName::CallId, format!("{branch}@192.0.2.10"));
        if self.scenario == Scenario::Register200 {
            req.body = Bytes::new();
            req.headers.remove(&HeaderName::ContentType);
        }
        self.uac
            .send_request(self.now, req, self.uas_addr, Transport::Udp)
            .expect("send_request");
        self.pump();
    }

    /// Moves datagrams between the layers and plays both TUs until nothing is queued.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = next(&mut self.uac) {
                moved = true;
                match out {
                    Output::Transmit(t) => {
                        self.uas.handle_input(self.now, datagram(self.uac_addr, t))
                    }
                    Output::Event(Event::Response { response, .. }) => {
                        if response.status.is_final() {
                            self.finals_at_uac += 1;
                        }
                        if response.status.is_success() && self.scenario == Scenario::Invite200 {
                            self.uac.send_stateless(ack_for_2xx(
                                &response,
                                &mut self.ids,
                                self.uas_addr,
                            ));
                        }
                    }
                    Output::Event(Event::Terminated { .. }) => self.terminated += 1,
                    Output::Event(_) | Output::Timeout(_) => {}
                }
            }
            while let Some(out) = next(&mut self.uas) {
                moved = true;
                match out {
                    Output::Transmit(t) => {
                        self.uac.handle_input(self.now, datagram(self.uas_addr, t))
                    }
                    Output::Event(Event::Request { key, request, .. }) => {
                        let now = self.now;
                        let finals: &[StatusCode] = match self.scenario {
                            Scenario::Invite200 => &[StatusCode::RINGING, StatusCode::OK],
                            Scenario::Invite486 => &[StatusCode::BUSY_HERE],
                            Scenario::Register200 => &[StatusCode::OK],
                        };
                        for status in finals {
                            let resp = build_response(&request, *status, Some("uas-tag"));
                            self.uas
                                .send_response(now, &key, resp)
                                .expect("send_response");
                        }
                    }
                    Output::Event(Event::Terminated { .. }) => self.terminated += 1,
                    Output::Event(_) | Output::Timeout(_) => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Lets the virtual clock run past every linger timer.
    fn finish(&mut self) {
        self.now += Duration::from_secs(40);
        self.uac.handle_timeout(self.now);
        self.uas.handle_timeout(self.now);
        self.pump();
    }
}

fn next(layer: &mut TransactionLayer) -> Option<Output> {
    match layer.poll_output() {
        Output::Timeout(_) => None,
        other => Some(other),
    }
}

fn datagram(source: SocketAddr, t: Transmit) -> Input {
    Input::Datagram {
        transport: t.transport,
        source,
        data: t.contents,
    }
}

fn ack_for_2xx(response: &sip_msg::Response, ids: &mut IdGenerator, to: SocketAddr) -> Transmit {
    let mut ack = Request::new(
        Method::Ack,
        sip_msg::Uri::parse("sip:bob@192.0.2.20:5060").expect("uri"),
    );
    ack.headers.push(
        HeaderName::Via,
        format!("SIP/2.0/UDP {UAC};branch={}", ids.branch()),
    );
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = response.headers.get(&name) {
            ack.headers.push(name, v);
        }
    }
    ack.headers.push(HeaderName::CSeq, "1 ACK");
    ack.headers.push(HeaderName::MaxForwards, "70");
    Transmit {
        transport: Transport::Udp,
        destination: to,
        contents: Bytes::from(ack.to_bytes()),
    }
}

/// Runs `n` complete transactions and checks they all ended on both sides.
fn run(scenario: Scenario, n: u64, start: Instant) {
    let mut pair = Pair::new(scenario, start);
    for _ in 0..n {
        pair.one();
    }
    pair.finish();
    assert_eq!(
        pair.terminated,
        2 * n,
        "{scenario:?}: every transaction terminated on both sides"
    );
    assert_eq!(
        pair.finals_at_uac, n,
        "{scenario:?}: one final response per transaction reached the UAC"
    );
    assert_eq!(
        pair.uac.transaction_count() + pair.uas.transaction_count(),
        0
    );
    black_box(pair);
}

#[allow(clippy::disallowed_methods)] // benches measure wall time; the cores never see it
fn wall_clock() -> Instant {
    Instant::now()
}

fn bench(c: &mut Criterion) {
    // One plain measurement first, printed as transactions per second.
    for scenario in [
        Scenario::Invite200,
        Scenario::Invite486,
        Scenario::Register200,
    ] {
        let n = 50_000;
        let t0 = wall_clock();
        run(scenario, n, t0);
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "{scenario:?}: {n} complete transactions in {secs:.3} s = {:.0} transactions/s",
            n as f64 / secs
        );
    }
    let mut group = c.benchmark_group("transactions");
    group.throughput(Throughput::Elements(1));
    for (name, scenario) in [
        ("invite_200", Scenario::Invite200),
        ("invite_486", Scenario::Invite486),
        ("register_200", Scenario::Register200),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t0 = wall_clock();
                run(scenario, iters, t0);
                t0.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
