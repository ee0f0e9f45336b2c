//! Hostile corpora: all 4,527 PROTOS c07-sip INVITEs (placeholders filled) and every PJSIP
//! `sip` / `sip-dialog` fuzz seed go through `parse_datagram` and through `StreamFramer`
//! without a panic, every verdict is a well-formed answer or a drop, and whatever parses
//! prints back to the same message. (A PROTOS teardown repeats its INVITE's mutated headers,
//! so teardowns are counted too, not expected to parse.) The counts are
//! printed (`cargo test -p sip-msg --test hostile_corpora -- --nocapture`).

use sip_msg::{
    Frame, HeaderName, ParseError, SipMessage, StatusCode, StreamFramer, Verdict, parse_datagram,
};
use testdata::{PROTOS_CASE_COUNT, PjsipCorpus};

/// What one message came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    parsed: usize,
    answered_400: usize,
    answered_other: usize,
    dropped: usize,
}

impl Tally {
    fn total(&self) -> usize {
        self.parsed + self.answered_400 + self.answered_other + self.dropped
    }

    /// Classifies a datagram's outcome and checks that an answer is well-formed.
    fn datagram(&mut self, what: &str, bytes: &[u8]) -> Result<SipMessage, ParseError> {
        let outcome = parse_datagram(bytes);
        match &outcome {
            Ok(msg) => {
                self.parsed += 1;
                // Whatever parsed prints to bytes that parse to the same message.
                let again = parse_datagram(&msg.to_bytes());
                assert_eq!(again.as_ref().ok(), Some(msg), "{what}: round trip");
            }
            Err(e) => match e.verdict() {
                Verdict::Drop => self.dropped += 1,
                Verdict::Respond(resp) => {
                    check_answer(what, e, &resp);
                    if resp.status == StatusCode::BAD_REQUEST {
                        self.answered_400 += 1;
                    } else {
                        self.answered_other += 1;
                    }
                }
            },
        }
        outcome
    }
}

/// An answer is a 400/505/513 that copies the request's Via lines and prints to bytes.
fn check_answer(what: &str, err: &ParseError, resp: &sip_msg::Response) {
    let allowed = [400, 505, 513];
    assert!(
        allowed.contains(&resp.status.as_u16()),
        "{what}: answered {}",
        resp.status
    );
    let req = err
        .partial_request()
        .unwrap_or_else(|| panic!("{what}: answer without request"));
    assert_eq!(
        resp.headers.count(&HeaderName::Via),
        req.headers.count(&HeaderName::Via),
        "{what}: the answer must carry the request's Via lines"
    );
    assert!(!resp.to_bytes().is_empty());
}

/// Feeds `stream` to a framer in `chunk`-byte reads; returns (messages, invalid, fatal).
fn through_framer(stream: &[u8], chunk: usize) -> (usize, usize, usize) {
    let mut framer = StreamFramer::new();
    let (mut messages, mut invalid, mut fatal) = (0, 0, 0);
    for piece in stream.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next() {
            match frame {
                Ok(Frame::Message(_)) => messages += 1,
                Ok(Frame::Invalid(e)) => {
                    invalid += 1;
                    let _ = e.verdict();
                }
                Ok(Frame::Ping | Frame::Pong) => {}
                Err(_) => fatal += 1,
            }
        }
    }
    (messages, invalid, fatal)
}

#[test]
fn protos_c07_sip_never_panics_and_every_answer_is_well_formed() {
    let cases = testdata::protos_cases().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cases.len(), PROTOS_CASE_COUNT);
    let mut invites = Tally::default();
    let mut teardowns = Tally::default();
    let (mut stream_messages, mut stream_invalid, mut stream_fatal) = (0, 0, 0);
    for case in &cases {
        let what = format!("PROTOS case {:07}", case.index);
        let invite = invites.datagram(&what, &case.invite);
        if case.index == 0 {
            assert!(invite.is_ok(), "case 0 is the valid INVITE: {invite:?}");
        }
        let teardown = teardowns.datagram(&format!("{what} teardown"), &case.teardown);
        if case.index == 0 {
            assert!(teardown.is_ok(), "case 0's CANCEL is valid: {teardown:?}");
        }
        // On a stream the INVITE and its CANCEL arrive back to back, in 1,400-byte reads.
        let stream = [&case.invite[..], &case.teardown[..]].concat();
        let (m, i, f) = through_framer(&stream, 1400);
        stream_messages += m;
        stream_invalid += i;
        stream_fatal += f;
    }
    println!("PROTOS c07-sip INVITEs over UDP: {invites:?}");
    println!("PROTOS c07-sip teardowns over UDP: {teardowns:?}");
    println!(
        "PROTOS over a stream: {stream_messages} messages, {stream_invalid} invalid frames, \
         {stream_fatal} connections closed"
    );
    assert_eq!(invites.total(), PROTOS_CASE_COUNT);
    assert_eq!(teardowns.total(), PROTOS_CASE_COUNT);
}

#[test]
fn pjsip_seeds_never_panic() {
    for corpus in [PjsipCorpus::Sip, PjsipCorpus::SipDialog] {
        let seeds = testdata::pjsip_seeds(corpus).unwrap_or_else(|e| panic!("{e}"));
        let mut tally = Tally::default();
        let mut framed = (0, 0, 0);
        for seed in &seeds {
            let what = format!("{} {}", corpus.archive(), seed.name);
            let _ = tally.datagram(&what, &seed.bytes);
            for chunk in [1, 7, 64, usize::MAX] {
                let (m, i, f) = through_framer(&seed.bytes, chunk.min(seed.bytes.len().max(1)));
                if chunk == usize::MAX {
                    framed = (framed.0 + m, framed.1 + i, framed.2 + f);
                }
            }
        }
        println!(
            "PJSIP {}: {} seeds, {tally:?}; stream: {} messages, {} invalid, {} closed",
            corpus.archive(),
            seeds.len(),
            framed.0,
            framed.1,
            framed.2
        );
        assert_eq!(tally.total(), seeds.len());
    }
}
