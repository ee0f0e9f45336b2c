//! The SIP messages the B2BUA writes: the callee leg's INVITE, in-dialog ACK/BYE on either
//! leg, CANCEL, and the pieces of the caller's responses.

use bytes::Bytes;
use proto::v1::{Flow, SipTransport};
use sip_msg::{HeaderName, Method, NameAddr, Request, Response, Uri};

use super::LegTarget;
use super::call::{Call, Leg};

/// Call-control's own Via: a placeholder naming the replica (ADR 0011); the edge puts its
/// real Via above it.
fn placeholder_via(instance: &str, branch: &str) -> String {
    format!("SIP/2.0/UDP {instance}.invalid;branch={branch}")
}

/// A Contact that brings the far end's in-dialog requests back through the edge holding its
/// flow (the edge's own address on that flow), hence to call-control.
pub(super) fn edge_contact(flow: &Flow) -> String {
    let transport = match SipTransport::try_from(flow.transport) {
        Ok(SipTransport::Tcp) => ";transport=tcp",
        Ok(SipTransport::Tls) => ";transport=tls",
        _ => "",
    };
    format!("<sip:cc@{}{transport}>", flow.local)
}

/// The SDP (or other) body of a message, with its Content-Type.
pub(super) fn body_of(response: &Response) -> Option<(String, Bytes)> {
    if response.body.is_empty() {
        return None;
    }
    let content_type = response
        .headers
        .get(&HeaderName::ContentType)
        .unwrap_or("application/sdp")
        .to_owned();
    Some((content_type, response.body.clone()))
}

pub(super) fn to_tag(response: &Response) -> Option<String> {
    response
        .headers
        .to_header()
        .ok()
        .flatten()
        .and_then(|to| to.params.get("tag").flatten().map(str::to_owned))
}

pub(super) fn contact_of(response: &Response) -> Option<String> {
    match response.headers.contacts().ok().flatten() {
        Some(sip_msg::Contacts::List(list)) => list.first().map(|c| c.uri.to_string()),
        _ => None,
    }
}

/// The callee leg's INVITE: a new dialog (Call-ID, From tag) carrying the caller's identity
/// and offer.
pub(super) fn b_leg_invite(
    a: &Request,
    target: &LegTarget,
    call_id: &str,
    from_tag: &str,
    instance: &str,
    branch: &str,
) -> Request {
    let uri = Uri::parse(&target.contact).unwrap_or_else(|_| a.uri.clone());
    let mut invite = Request::new(Method::Invite, uri);
    let h = &mut invite.headers;
    h.push(HeaderName::Via, placeholder_via(instance, branch));
    let max_forwards = a
        .headers
        .get(&HeaderName::MaxForwards)
        .and_then(|v| v.trim().parse::<u8>().ok())
        .unwrap_or(70)
        .saturating_sub(1);
    h.push(HeaderName::MaxForwards, max_forwards.to_string());
    let mut from = a
        .headers
        .from_header()
        .ok()
        .flatten()
        .unwrap_or_else(|| NameAddr::new(a.uri.clone()));
    from.params = sip_msg::Params::new();
    from.params.set("tag", Some(from_tag));
    h.push(HeaderName::From, from.to_string());
    h.push(HeaderName::To, format!("<{}>", target.aor));
    h.push(HeaderName::CallId, call_id);
    h.push(HeaderName::CSeq, "1 INVITE");
    h.push(HeaderName::Contact, edge_contact(&target.flow));
    if let Some(allow) = a.headers.get(&HeaderName::Allow) {
        h.push(HeaderName::Allow, allow);
    }
    if !a.body.is_empty() {
        let content_type = a
            .headers
            .get(&HeaderName::ContentType)
            .unwrap_or("application/sdp")
            .to_owned();
        h.push(HeaderName::ContentType, content_type);
    }
    h.push(HeaderName::ContentLength, a.body.len().to_string());
    invite.body = a.body.clone();
    invite
}

/// The CANCEL of a callee leg's INVITE (the edge cancels its own transaction; the message
/// names the method and the dialog).
pub(super) fn cancel_for(invite: &Request) -> Request {
    sip_core::transaction::build_cancel(invite).unwrap_or_else(|_| {
        let mut cancel = invite.clone();
        cancel.method = Method::Cancel;
        cancel
    })
}

/// An ACK (for the 2xx) or BYE on a callee leg, inside its dialog.
pub(super) fn in_dialog_b(
    leg: &Leg,
    method: Method,
    cseq: u32,
    instance: &str,
    branch: &str,
) -> Request {
    let uri = leg
        .remote_contact
        .as_deref()
        .and_then(|c| Uri::parse(c).ok())
        .unwrap_or_else(|| leg.invite.uri.clone());
    let mut request = Request::new(method.clone(), uri);
    let h = &mut request.headers;
    h.push(HeaderName::Via, placeholder_via(instance, branch));
    h.push(HeaderName::MaxForwards, "70");
    if let Some(from) = leg.invite.headers.get(&HeaderName::From) {
        h.push(HeaderName::From, from);
    }
    let to = match &leg.remote_tag {
        Some(tag) => format!("<{}>;tag={tag}", leg.target.aor),
        None => format!("<{}>", leg.target.aor),
    };
    h.push(HeaderName::To, to);
    h.push(HeaderName::CallId, leg.call_id.as_str());
    h.push(HeaderName::CSeq, format!("{cseq} {method}"));
    h.push(HeaderName::ContentLength, "0");
    request
}

/// Sets a request's body and its Content-Type/Content-Length.
pub(super) fn set_body(request: &mut Request, content_type: &str, body: Bytes) {
    request.headers.set(HeaderName::ContentType, content_type);
    request
        .headers
        .set(HeaderName::ContentLength, body.len().to_string());
    request.body = body;
}

/// Sets a response's body and its Content-Type/Content-Length.
pub(super) fn set_response_body(response: &mut Response, content_type: &str, body: Bytes) {
    response.headers.set(HeaderName::ContentType, content_type);
    response
        .headers
        .set(HeaderName::ContentLength, body.len().to_string());
    response.body = body;
}

/// A request to the caller inside its dialog, seen from our side (From = its To with our tag):
/// BYE, a relayed re-INVITE, the ACK of that re-INVITE's 2xx.
pub(super) fn to_caller(
    call: &Call,
    method: Method,
    cseq: u32,
    instance: &str,
    branch: &str,
) -> Request {
    let a = &call.a_request;
    let uri = match a.headers.contacts().ok().flatten() {
        Some(sip_msg::Contacts::List(list)) if !list.is_empty() => list[0].uri.clone(),
        _ => a.uri.clone(),
    };
    let mut bye = Request::new(method.clone(), uri);
    let h = &mut bye.headers;
    h.push(HeaderName::Via, placeholder_via(instance, branch));
    h.push(HeaderName::MaxForwards, "70");
    let mut from = a
        .headers
        .to_header()
        .ok()
        .flatten()
        .unwrap_or_else(|| NameAddr::new(a.uri.clone()));
    from.params.set("tag", Some(&call.a_tag));
    h.push(HeaderName::From, from.to_string());
    if let Some(to) = a.headers.get(&HeaderName::From) {
        h.push(HeaderName::To, to);
    }
    h.push(HeaderName::CallId, call.a_call_id.as_str());
    h.push(HeaderName::CSeq, format!("{cseq} {method}"));
    h.push(HeaderName::ContentLength, "0");
    bye
}
