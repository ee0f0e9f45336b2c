//! Hostile input through the transaction layer: every RFC 4475 torture message, all 4,527
//! PROTOS c07-sip cases (INVITE then CANCEL) and the PJSIP fuzz seeds go in as datagrams, a
//! TU answers whatever reaches it, and the clock runs until the layer is empty. Nothing may
//! panic, nothing malformed may reach the TU, everything the layer sends must parse back as a
//! response, and what it sends is bounded by what it received.

mod common;

use std::time::Duration;

use common::{Fixture, parse_datagram_ok};
use sip_core::transaction::{Event, TransactionConfig, TransactionKey};
use sip_msg::{Method, SipMessage, StatusCode, Transport, build_response};

const SOURCE: &str = "192.0.2.10:5060";

/// Per datagram in, at most this many bytes out per byte in, plus a fixed allowance per
/// datagram (a response adds a To tag, a reason phrase, a Content-Length; Timer G resends a
/// non-2xx final about ten times over 32 s).
const AMPLIFICATION: usize = 16;
const ALLOWANCE: usize = 512;

#[derive(Default)]
struct Totals {
    cases: usize,
    datagrams: usize,
    requests_to_tu: usize,
    responses_sent: usize,
    bytes_in: usize,
    bytes_out: usize,
}

/// A TU that rings on INVITE (answering 487 on CANCEL, 486 at the end of the case) and
/// answers 200 to anything else.
struct Harness {
    f: Fixture,
    seen_events: usize,
    ringing: Vec<(TransactionKey, sip_msg::Request)>,
    totals: Totals,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            f: Fixture::new(TransactionConfig::default()),
            seen_events: 0,
            ringing: Vec::new(),
            totals: Totals::default(),
        }
    }

    fn tu(&mut self, name: &str) {
        while self.seen_events < self.f.events.len() {
            let event = self.f.events[self.seen_events].1.clone();
            self.seen_events += 1;
            let now = self.f.now;
            match event {
                Event::Request { key, request, .. } => {
                    self.totals.requests_to_tu += 1;
                    assert!(
                        parse_datagram_ok(&request.to_bytes()),
                        "{name}: the TU got a request that does not print back to a parseable one"
                    );
                    if request.method == Method::Invite {
                        let ringing = build_response(&request, StatusCode::RINGING, Some("tu"));
                        self.f.layer.send_response(now, &key, ringing).expect("180");
                        self.ringing.push((key, *request));
                    } else {
                        let ok = build_response(&request, StatusCode::OK, Some("tu"));
                        self.f.layer.send_response(now, &key, ok).expect("200");
                    }
                }
                Event::Cancel { invite_key, .. } => {
                    if let Some(i) = self.ringing.iter().position(|(k, _)| *k == invite_key) {
                        let (key, invite) = self.ringing.swap_remove(i);
                        let terminated =
                            build_response(&invite, StatusCode::REQUEST_TERMINATED, Some("tu"));
                        self.f
                            .layer
                            .send_response(now, &key, terminated)
                            .expect("487");
                    }
                }
                Event::Ack { request, .. } => {
                    assert!(
                        parse_datagram_ok(&request.to_bytes()),
                        "{name}: malformed ACK reached the TU"
                    );
                }
                // Responses in the corpora match no transaction of ours.
                Event::StrayResponse { response, .. } => {
                    assert!(
                        parse_datagram_ok(&response.to_bytes()),
                        "{name}: malformed response reached the TU"
                    );
                }
                Event::Response { .. } => {
                    panic!("{name}: a server-only layer matched a response: {event:?}")
                }
                Event::Timeout { .. } | Event::TransportError { .. } | Event::Terminated { .. } => {
                }
            }
            self.f.drain();
        }
    }

    /// Feeds one case (one or more datagrams), answers, runs every timer out, and checks
    /// what came out.
    fn case(&mut self, name: &str, datagrams: &[&[u8]]) {
        let first_transmit = self.f.transmits.len();
        let mut bytes_in = 0;
        for d in datagrams {
            bytes_in += d.len();
            self.f.receive(d.to_vec(), SOURCE, Transport::Udp);
            self.tu(name);
            self.f.advance(Duration::from_millis(10));
            self.tu(name);
        }
        let now = self.f.now;
        for (key, invite) in std::mem::take(&mut self.ringing) {
            let busy = build_response(&invite, StatusCode::BUSY_HERE, Some("tu"));
            // The INVITE may have ended already (transport error cannot happen here, so this
            // is only ever Ok); keep the layer's verdict honest either way.
            self.f.layer.send_response(now, &key, busy).expect("486");
        }
        self.f.run_until_empty(Duration::from_secs(300));
        self.tu(name);
        assert_eq!(
            self.f.layer.transaction_count(),
            0,
            "{name}: transactions left after every timer ran"
        );

        let sent = &self.f.transmits[first_transmit..];
        let bytes_out: usize = sent.iter().map(|(_, t)| t.contents.len()).sum();
        for (_, t) in sent {
            match sip_msg::parse_datagram(&t.contents) {
                Ok(SipMessage::Response(_)) => {}
                Ok(SipMessage::Request(r)) => {
                    panic!("{name}: the layer sent a request ({})", r.method)
                }
                // A verdict answer copies the request's Via/From/To/Call-ID/CSeq (§8.2.6), so
                // when one of those was the fault the answer carries it too; it must still be
                // a well-formed status line answering with the verdict's code.
                Err(e) => assert!(
                    is_verdict_status_line(&t.contents),
                    "{name}: the layer sent something that is no verdict answer ({e}):\n{}",
                    String::from_utf8_lossy(&t.contents)
                ),
            }
        }
        let bound = AMPLIFICATION * (bytes_in + ALLOWANCE * datagrams.len());
        assert!(
            bytes_out <= bound,
            "{name}: {bytes_out} bytes out for {bytes_in} in (bound {bound})"
        );
        self.totals.cases += 1;
        self.totals.datagrams += datagrams.len();
        self.totals.responses_sent += sent.len();
        self.totals.bytes_in += bytes_in;
        self.totals.bytes_out += bytes_out;
        // Keep memory flat over thousands of cases.
        self.f.transmits.clear();
        self.f.events.clear();
        self.seen_events = 0;
    }
}

#[test]
fn rfc4475_torture_messages() {
    let mut h = Harness::new();
    let corpus = testdata::rfc4475().expect("RFC 4475 corpus");
    for m in &corpus {
        h.case(&m.name, &[&m.bytes]);
    }
    let t = &h.totals;
    assert_eq!(t.cases, testdata::RFC4475_FILE_COUNT);
    assert!(t.requests_to_tu > 0, "valid torture messages reach the TU");
    assert!(
        h.f.layer.stats().unparseable_answered > 0,
        "invalid torture requests are answered"
    );
}

#[test]
fn protos_c07_sip_all_cases_with_their_cancel() {
    let mut h = Harness::new();
    let cases = testdata::protos_cases().expect("PROTOS c07-sip corpus");
    assert_eq!(cases.len(), testdata::PROTOS_CASE_COUNT);
    for c in &cases {
        h.case(
            &format!("protos case {}", c.index),
            &[&c.invite, &c.teardown],
        );
    }
    let t = &h.totals;
    let stats = h.f.layer.stats();
    assert!(t.requests_to_tu > 0);
    assert!(stats.unparseable_answered > 0, "broken INVITEs get a 400");
    assert!(
        t.bytes_out <= AMPLIFICATION * t.bytes_in,
        "{} out for {} in",
        t.bytes_out,
        t.bytes_in
    );
    eprintln!(
        "PROTOS: {} datagrams, {} requests to the TU, {} responses sent, {} unparseable answered, \
         {} unparseable dropped",
        t.datagrams,
        t.requests_to_tu,
        t.responses_sent,
        stats.unparseable_answered,
        stats.unparseable_dropped
    );
}

#[test]
fn pjsip_fuzz_seeds() {
    let mut h = Harness::new();
    for corpus in [testdata::PjsipCorpus::Sip, testdata::PjsipCorpus::SipDialog] {
        for m in testdata::pjsip_seeds(corpus).expect("PJSIP seed corpus") {
            h.case(&m.name, &[&m.bytes]);
        }
    }
    assert!(h.totals.cases > 0);
}

#[test]
fn protos_cases_over_a_reliable_transport_also_end_cleanly() {
    // Same first 500 cases as parsed messages over TCP: no retransmission timers, zero
    // linger timers, and the layer still ends empty.
    let mut h = Harness::new();
    let cases = testdata::protos_cases().expect("PROTOS c07-sip corpus");
    for c in cases.iter().take(500) {
        for d in [&c.invite, &c.teardown] {
            if let Ok(message) = sip_msg::parse_datagram(d) {
                h.f.input(sip_core::transaction::Input::Message {
                    transport: Transport::Tcp,
                    source: common::addr(SOURCE),
                    message: Box::new(message),
                });
                h.tu("tcp");
            }
        }
        let now = h.f.now;
        for (key, invite) in std::mem::take(&mut h.ringing) {
            let busy = build_response(&invite, StatusCode::BUSY_HERE, Some("tu"));
            h.f.layer.send_response(now, &key, busy).expect("486");
        }
        h.f.run_until_empty(Duration::from_secs(300));
        h.tu("tcp");
    }
    // Over TCP nothing is retransmitted: INVITE server transactions wait only for Timer H
    // (no ACK comes), the rest end at once.
    assert_eq!(h.f.layer.transaction_count(), 0);
    assert!(
        h.f.transmits
            .iter()
            .all(|(_, t)| t.transport == Transport::Tcp)
    );
}

/// `SIP/2.0 400 …`, `SIP/2.0 505 …` or `SIP/2.0 513 …` followed by CRLF: the answers
/// the parser's verdict produces for unparseable requests.
fn is_verdict_status_line(wire: &[u8]) -> bool {
    let Some(end) = wire.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    let line = String::from_utf8_lossy(&wire[..end]);
    ["SIP/2.0 400 ", "SIP/2.0 505 ", "SIP/2.0 513 "]
        .iter()
        .any(|p| line.starts_with(p))
}
