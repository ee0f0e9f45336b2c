//! The messages the transaction layer builds on its own or helps the TU build: the ACK for
//! a non-2xx final response (§17.1.1.3), CANCEL (§9.1), a top Via with a fresh branch
//! (§8.1.1.7) and the automatic 100 Trying (§17.2.1).

use sip_msg::{
    CSeq, HeaderName, Headers, Host, Method, Request, Response, StatusCode, Transport, Via,
};

use super::error::TransactionError;
use crate::IdGenerator;

/// Adds a top Via `SIP/2.0/<transport> host[:port];branch=z9hG4bK…` (with `;rport` when
/// asked, RFC 3581) and returns the new branch.
pub fn push_via(
    request: &mut Request,
    transport: &Transport,
    host: Host,
    port: Option<u16>,
    rport: bool,
    ids: &mut IdGenerator,
) -> String {
    let branch = ids.branch();
    let mut via = Via::new(transport.clone(), host, port, &branch);
    if rport {
        via.params.set("rport", None);
    }
    request.headers.push_front(HeaderName::Via, via.to_string());
    branch
}

/// The top Via value of a request as written, or an error.
fn top_via_text(request: &Request) -> Result<String, TransactionError> {
    Ok(request
        .headers
        .top_via()
        .map_err(|_| TransactionError::MissingVia)?
        .ok_or(TransactionError::MissingVia)?
        .to_string())
}

/// Builds the CANCEL for `request` (§9.1): same Request-URI, Call-ID, From, To and CSeq
/// number, CSeq method CANCEL, the request's top Via only (same branch, so it reaches the
/// same server transaction), its Route set, and Max-Forwards 70.
pub fn build_cancel(request: &Request) -> Result<Request, TransactionError> {
    let cseq = request
        .headers
        .cseq()
        .ok()
        .flatten()
        .ok_or(TransactionError::BadCSeq)?;
    let mut cancel = Request::new(Method::Cancel, request.uri.clone());
    let mut headers = Headers::with_capacity(8);
    headers.push(HeaderName::Via, top_via_text(request)?);
    for h in &request.headers {
        if matches!(
            h.name,
            HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::Route
        ) {
            headers.push(h.name.clone(), h.value.clone());
        }
    }
    headers.push(
        HeaderName::CSeq,
        CSeq {
            seq: cseq.seq,
            method: Method::Cancel,
        }
        .to_string(),
    );
    headers.push(HeaderName::MaxForwards, "70");
    cancel.headers = headers;
    Ok(cancel)
}

/// Builds the ACK a client INVITE transaction sends for a non-2xx final response
/// (§17.1.1.3): Request-URI, Call-ID, From and CSeq number of the INVITE, CSeq method ACK,
/// the response's To (with its tag), the INVITE's top Via only, its Route set.
pub(crate) fn build_ack_for_non_2xx(invite: &Request, response: &Response) -> Option<Request> {
    let cseq = invite.headers.cseq().ok().flatten()?;
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    let mut headers = Headers::with_capacity(8);
    headers.push(HeaderName::Via, top_via_text(invite).ok()?);
    for h in &invite.headers {
        if matches!(
            h.name,
            HeaderName::From | HeaderName::CallId | HeaderName::Route
        ) {
            headers.push(h.name.clone(), h.value.clone());
        }
    }
    let to = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| invite.headers.get(&HeaderName::To))?;
    headers.push(HeaderName::To, to);
    headers.push(
        HeaderName::CSeq,
        CSeq {
            seq: cseq.seq,
            method: Method::Ack,
        }
        .to_string(),
    );
    headers.push(HeaderName::MaxForwards, "70");
    ack.headers = headers;
    Some(ack)
}

/// The 100 Trying the INVITE server transaction sends when the TU is silent for 200 ms.
pub(crate) fn build_trying(invite: &Request) -> Response {
    sip_msg::build_response(invite, StatusCode::TRYING, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_msg::{SipMessage, parse_datagram};

    fn invite() -> Request {
        let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKzz\r\n\
            Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n\
            Max-Forwards: 69\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
            Call-ID: c1@192.0.2.1\r\nCSeq: 314 INVITE\r\nRequire: 100rel\r\nContent-Length: 0\r\n\r\n";
        match parse_datagram(raw.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn cancel_copies_what_section_9_1_lists_and_nothing_else() {
        let cancel = build_cancel(&invite()).unwrap();
        let h = &cancel.headers;
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri.to_string(), "sip:bob@example.com");
        assert_eq!(h.vias().unwrap().len(), 1);
        assert_eq!(h.top_via().unwrap().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(h.count(&HeaderName::Route), 2);
        assert_eq!(
            h.cseq().unwrap().unwrap(),
            CSeq {
                seq: 314,
                method: Method::Cancel
            }
        );
        assert!(!h.contains(&HeaderName::Require));
        assert!(parse_datagram(&cancel.to_bytes()).is_ok());
    }

    #[test]
    fn ack_for_non_2xx_takes_the_to_tag_of_the_response() {
        let inv = invite();
        let resp = sip_msg::build_response(&inv, StatusCode::BUSY_HERE, Some("b7"));
        let ack = build_ack_for_non_2xx(&inv, &resp).unwrap();
        assert_eq!(ack.headers.to_header().unwrap().unwrap().tag(), Some("b7"));
        assert_eq!(
            ack.headers.cseq().unwrap().unwrap(),
            CSeq {
                seq: 314,
                method: Method::Ack
            }
        );
        assert_eq!(ack.headers.vias().unwrap().len(), 1);
        assert_eq!(ack.headers.count(&HeaderName::Route), 2);
        assert!(parse_datagram(&ack.to_bytes()).is_ok());
    }

    #[test]
    fn push_via_adds_a_fresh_cookie_branch_on_top() {
        let mut req = invite();
        let mut ids = IdGenerator::new(1);
        let branch = push_via(
            &mut req,
            &Transport::Tcp,
            Host::Domain("edge.example".into()),
            Some(5070),
            true,
            &mut ids,
        );
        let top = req.headers.top_via().unwrap().unwrap();
        assert_eq!(top.branch(), Some(branch.as_str()));
        assert!(top.has_rfc3261_branch());
        assert_eq!(top.rport(), Some(None));
        assert_eq!(top.sent_by(), "edge.example:5070");
        assert_eq!(req.headers.vias().unwrap().len(), 3);
    }
}
