//! Checks shared by the fuzz targets: whatever parses prints back to the same message and
//! every typed accessor copes with what the parser let through; every verdict builds.

use sip_msg::{ParseError, SipMessage, Verdict, parse_datagram};

pub fn check_parsed(msg: &SipMessage) {
    let printed = msg.to_bytes();
    match parse_datagram(&printed) {
        Ok(again) => assert_eq!(&again, msg, "print + parse changed the message"),
        Err(e) => panic!("a parsed message printed to bytes that do not parse: {e}"),
    }
    let h = msg.headers();
    let _ = (
        h.vias(),
        h.top_via(),
        h.cseq(),
        h.from_header(),
        h.to_header(),
        h.contacts(),
    );
    let _ = (
        h.max_forwards(),
        h.expires(),
        h.min_expires(),
        h.content_length(),
    );
    let _ = (h.content_type(), h.routes(), h.record_routes(), h.paths());
    let _ = (
        h.allow(),
        h.supported(),
        h.require(),
        h.unsupported(),
        h.proxy_require(),
    );
    let _ = (
        h.event(),
        h.subscription_state(),
        h.refer_to(),
        h.referred_by(),
        h.replaces(),
    );
    let _ = (h.p_asserted_identity(), h.user_agent(), h.server());
    let _ = (
        h.www_authenticate(),
        h.proxy_authenticate(),
        h.authorization(),
    );
}

pub fn check_failed(e: &ParseError) {
    if let Verdict::Respond(resp) = e.verdict() {
        assert!(resp.to_bytes().starts_with(b"SIP/2.0 "));
    }
}
