//! Transaction identity: the opaque [`TransactionKey`] handed to the TU, and the match keys
//! that find a transaction from a received message (RFC 3261 §17.1.3, §17.2.3, and the
//! RFC 2543 fallback for requests whose branch lacks the magic cookie).

use sip_msg::{Method, Request, Response, Via};

/// Which side of a transaction this layer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// We sent the request (§17.1).
    Client,
    /// We received the request (§17.2).
    Server,
}

/// A live transaction of one [`TransactionLayer`](super::TransactionLayer). `Copy`, eight
/// bytes of slot and generation plus role and kind: a terminated transaction's key never
/// names a later one, because the slot's generation moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    role: Role,
    invite: bool,
}

impl TransactionKey {
    pub(crate) fn new(slot: u32, generation: u32, role: Role, invite: bool) -> TransactionKey {
        TransactionKey {
            slot,
            generation,
            role,
            invite,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// True for INVITE transactions (the §17.1.1 / §17.2.1 state machines).
    pub fn is_invite(&self) -> bool {
        self.invite
    }
}

/// The method part of a server match key: ACK matches the INVITE transaction it
/// acknowledges, CANCEL has a transaction of its own, every other method shares one class
/// and the method itself is compared after the lookup (§17.2.3), so that a CANCEL can find
/// the non-INVITE transaction it targets without knowing its method (§9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MethodClass {
    Invite,
    Cancel,
    Other,
}

impl MethodClass {
    /// The class a request of `method` matches; ACK counts as INVITE.
    pub(crate) fn of_request(method: &Method) -> MethodClass {
        match method {
            Method::Invite | Method::Ack => MethodClass::Invite,
            Method::Cancel => MethodClass::Cancel,
            _ => MethodClass::Other,
        }
    }
}

/// Lookup key of the match index. Strings are owned so that the index outlives messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum MatchKey {
    /// §17.1.3: the top Via branch of the request we sent and the CSeq method.
    Client { branch: Box<str>, method: Method },
    /// §17.2.3: branch, sent-by (host lower-cased) and method class.
    Server {
        branch: Box<str>,
        sent_by: Box<str>,
        method: MethodClass,
    },
    /// §17.2.3, RFC 2543 requests: Request-URI, From tag, Call-ID, CSeq number, top Via and
    /// method class. The To tag is checked after the lookup (it differs between a request and
    /// the ACK for its response).
    Legacy {
        uri: Box<str>,
        from_tag: Box<str>,
        call_id: Box<str>,
        cseq: u32,
        top_via: Box<str>,
        method: MethodClass,
    },
}

/// sent-by with the host lower-cased: hosts compare case-insensitively (§19.1.4).
pub(crate) fn normalized_sent_by(via: &Via) -> Box<str> {
    let mut s = via.host.to_string();
    s.make_ascii_lowercase();
    if let Some(port) = via.port {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.into_boxed_str()
}

/// The match key of a received request as the server side sees it, with `method` standing
/// for the request's own method (callers pass INVITE to look up the target of a CANCEL).
/// `None` when the request lacks what matching needs (top Via, CSeq, Call-ID).
pub(crate) fn server_key(
    request: &Request,
    top_via: &Via,
    method: MethodClass,
) -> Option<MatchKey> {
    if top_via.has_rfc3261_branch() {
        let branch = top_via.branch()?;
        return Some(MatchKey::Server {
            branch: branch.into(),
            sent_by: normalized_sent_by(top_via),
            method,
        });
    }
    let cseq = request.headers.cseq().ok().flatten()?;
    let from = request.headers.from_header().ok().flatten()?;
    Some(MatchKey::Legacy {
        uri: request.uri.to_string().into_boxed_str(),
        from_tag: from.tag().unwrap_or("").into(),
        call_id: request.headers.call_id()?.into(),
        cseq: cseq.seq,
        top_via: top_via.to_string().into_boxed_str(),
        method,
    })
}

/// The client match key of a response: its top Via branch and CSeq method (§17.1.3).
pub(crate) fn client_key_of_response(response: &Response) -> Option<MatchKey> {
    let via = response.headers.top_via().ok().flatten()?;
    let cseq = response.headers.cseq().ok().flatten()?;
    Some(MatchKey::Client {
        branch: via.branch()?.into(),
        method: cseq.method,
    })
}

/// The To tag of a message's To header, empty when absent or malformed.
pub(crate) fn to_tag(headers: &sip_msg::Headers) -> Box<str> {
    headers
        .to_header()
        .ok()
        .flatten()
        .and_then(|t| t.tag().map(Box::from))
        .unwrap_or_default()
}
