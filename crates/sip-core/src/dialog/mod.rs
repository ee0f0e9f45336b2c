//! The RFC 3261 §12 dialog layer, sans-IO: dialog state (identifiers, route set, targets,
//! sequence numbers), its creation on either side, requests built within it, the checks
//! on requests received within it, forking (several dialogs from one INVITE), and the
//! §13.3.1.4 retransmission of a 2xx until its ACK arrives.
//!
//! Division of work with the transaction layer: requests built here carry every header
//! except **Via**. The caller (the transaction layer or the edge that sends the request)
//! adds the top Via with a fresh branch from [`IdGenerator`](crate::IdGenerator), because
//! only it knows the transport and sent-by. The same holds for the ACK of a 2xx, which is
//! sent outside any transaction; [`Dialog::ack_for_2xx`] returns the same ACK for every
//! retransmission of the same 2xx, and the caller should reuse the Via it added the first
//! time (keep the sent ACK, or derive the branch from the dialog and CSeq).
//!
//! Module map: [`uac`] (dialogs we initiated), [`uas`] (dialogs we accepted), [`store`]
//! (lookup by [`DialogId`], forking), [`answer`] (2xx retransmission).

pub mod answer;
pub mod store;
pub mod uac;
pub mod uas;

pub use answer::{AnswerEvent, AnswerRetransmitter};
pub use store::DialogStore;
pub use uas::dialog_response;

use sip_msg::typed::HeaderError;
use sip_msg::{
    CSeq, HeaderName, Headers, Method, NameAddr, Request, Response, Scheme, StatusCode, Uri,
    build_response,
};

/// Max-Forwards of requests we originate (RFC 3261 §8.1.1.6).
pub const MAX_FORWARDS: u32 = 70;

/// A dialog's identity (§12): Call-ID and both tags, seen from our side.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// Where a dialog is in its life (§12.1, §12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended by BYE, a non-2xx final answer to the initial INVITE, a 481/408, or the TU.
    Terminated,
}

/// Which side of the dialog-creating request we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogRole {
    /// We sent the initial request.
    Uac,
    /// We received it.
    Uas,
}

/// The state of one dialog (§12.1.1, §12.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub(crate) id: DialogId,
    pub(crate) state: DialogState,
    pub(crate) role: DialogRole,
    /// Our address, with our tag: From of our requests.
    pub(crate) local: NameAddr,
    /// The peer's address, with its tag: To of our requests.
    pub(crate) remote: NameAddr,
    /// Our Contact, when known, sent again in target refresh requests.
    pub(crate) local_target: Option<Uri>,
    /// The peer's Contact: the Request-URI of our requests.
    pub(crate) remote_target: Uri,
    /// Proxies our requests traverse, in the order they are visited.
    pub(crate) route_set: Vec<NameAddr>,
    pub(crate) local_seq: Option<u32>,
    pub(crate) remote_seq: Option<u32>,
    pub(crate) secure: bool,
    /// CSeq number of the latest INVITE (initial or re-INVITE) we sent in the dialog.
    pub(crate) invite_seq: Option<u32>,
    /// UAC: the ACK sent for the latest 2xx, resent for its retransmissions.
    pub(crate) last_ack: Option<Request>,
}

/// Why a dialog could not be created, updated or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// A header needed here is absent.
    #[error("missing {0} header")]
    MissingHeader(HeaderName),
    /// A header needed here is malformed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The From tag (ours as UAC, theirs as UAS) or the To tag is absent.
    #[error("missing {0} tag")]
    MissingTag(HeaderName),
    /// A dialog-creating 2xx (or a request that creates a dialog) has no Contact.
    #[error("missing Contact in a dialog-creating message")]
    MissingContact,
    /// The request method does not create dialogs (only INVITE, SUBSCRIBE, REFER do).
    #[error("{0} does not create a dialog")]
    MethodNotDialogCreating(Method),
    /// The response does not create a dialog (100, a 1xx without To tag, or ≥ 300).
    #[error("status {0} does not create a dialog")]
    StatusNotDialogCreating(StatusCode),
    /// The message's Call-ID or tags are not this dialog's.
    #[error("message does not belong to this dialog")]
    DialogMismatch,
    /// The dialog has ended; nothing more can be sent in it.
    #[error("dialog terminated")]
    Terminated,
    /// ACK and CANCEL are not built by `build_request` (see `ack_for_2xx`; CANCEL copies
    /// the INVITE's transaction, §9.1).
    #[error("{0} is not built as an in-dialog request")]
    NotAnInDialogRequest(Method),
    /// `ack_for_2xx` was given something else than a 2xx to an INVITE.
    #[error("not a 2xx response to INVITE")]
    NotInvite2xx,
}

/// Why an in-dialog request is refused (§12.2.2); [`InDialogError::status`] gives the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InDialogError {
    /// No dialog has this Call-ID and pair of tags, or it has ended: 481.
    #[error("no such dialog")]
    UnknownDialog,
    /// The CSeq is lower than the last one received in this dialog: 500.
    #[error("CSeq {received} lower than {last}")]
    CSeqOutOfOrder {
        /// The request's CSeq number.
        received: u32,
        /// The remote sequence number of the dialog.
        last: u32,
    },
    /// CSeq, Call-ID, From or To is absent or malformed: 400.
    #[error("malformed in-dialog request: {0}")]
    Malformed(DialogError),
}

impl InDialogError {
    pub fn status(&self) -> StatusCode {
        match self {
            InDialogError::UnknownDialog => StatusCode::CALL_DOES_NOT_EXIST,
            InDialogError::CSeqOutOfOrder { .. } => StatusCode::SERVER_INTERNAL_ERROR,
            InDialogError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The response to send, unless the request is an ACK (never answered): `None` then.
    pub fn response(&self, request: &Request) -> Option<Response> {
        (request.method != Method::Ack).then(|| build_response(request, self.status(), None))
    }
}

impl Dialog {
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    pub fn role(&self) -> DialogRole {
        self.role
    }

    /// The local URI (From of our requests, without its tag).
    pub fn local_uri(&self) -> &Uri {
        &self.local.uri
    }

    /// The remote URI (To of our requests).
    pub fn remote_uri(&self) -> &Uri {
        &self.remote.uri
    }

    pub fn local_target(&self) -> Option<&Uri> {
        self.local_target.as_ref()
    }

    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    pub fn local_seq(&self) -> Option<u32> {
        self.local_seq
    }

    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// True when the dialog was set up with a SIPS Request-URI (§12.1.1).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Sets our Contact, sent in later target refresh requests.
    pub fn set_local_target(&mut self, target: Uri) {
        self.local_target = Some(target);
    }

    /// Ends the dialog (e.g. after the TU gave up waiting for an ACK and sent BYE).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// Request-URI and Route values for a request in this dialog (§12.2.1.1): with a loose
    /// first route (`;lr`) the Request-URI is the remote target and the route set goes in
    /// Route; with a strict first route, the Request-URI is that route's URI and the remote
    /// target is appended as the last Route.
    pub fn request_target(&self) -> (Uri, Vec<NameAddr>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if first.uri.params.contains("lr") => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                let mut ruri = first.uri.clone();
                // Header parameters and `method` are not allowed in a Request-URI (§19.1.1).
                ruri.headers.clear();
                ruri.params.remove("method");
                let mut routes: Vec<NameAddr> = self.route_set[1..].to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (ruri, routes)
            }
        }
    }

    /// A request within the dialog (§12.2.1.1): Request-URI and Route per the route set,
    /// From/To with tags, Call-ID, the next local CSeq, Max-Forwards 70, and our Contact for
    /// target refresh methods. No Via (see the module documentation). Sending BYE ends
    /// the dialog.
    pub fn build_request(&mut self, method: Method) -> Result<Request, DialogError> {
        if matches!(method, Method::Ack | Method::Cancel) {
            return Err(DialogError::NotAnInDialogRequest(method));
        }
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        // An empty local sequence (UAS side) starts at 1: any value below 2**31 is allowed
        // (§8.1.1.5), and a fixed start keeps the core deterministic.
        let seq = self.local_seq.map_or(1, |s| s.saturating_add(1));
        self.local_seq = Some(seq);
        if method == Method::Invite {
            self.invite_seq = Some(seq);
        }
        let mut request = self.request_skeleton(method.clone(), seq);
        if is_target_refresh(&method)
            && let Some(contact) = &self.local_target
        {
            request
                .headers
                .push(HeaderName::Contact, format!("<{contact}>"));
        }
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(request)
    }

    /// Request line, Route, Max-Forwards, From, To, Call-ID and CSeq.
    pub(crate) fn request_skeleton(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = self.request_target();
        let mut request = Request::new(method.clone(), uri);
        let h = &mut request.headers;
        for route in &routes {
            h.push(HeaderName::Route, route.to_string());
        }
        h.push(HeaderName::MaxForwards, MAX_FORWARDS.to_string());
        h.push(HeaderName::From, self.local.to_string());
        h.push(HeaderName::To, self.remote.to_string());
        h.push(HeaderName::CallId, self.id.call_id.clone());
        h.push(HeaderName::CSeq, CSeq { seq, method }.to_string());
        request
    }

    /// True when a message with this Call-ID and (local, remote) tags is this dialog's.
    pub(crate) fn owns(&self, call_id: &str, local_tag: &str, remote_tag: &str) -> bool {
        self.id.call_id == call_id
            && self.id.local_tag == local_tag
            && self.id.remote_tag == remote_tag
    }
}

/// Methods whose requests and 2xx responses replace the remote target (§12.2, RFC 6665 §4.1).
pub fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

/// Methods whose request creates a dialog (RFC 3261 §12.1, RFC 6665, RFC 3515).
pub fn creates_dialog(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
}

fn required<T>(value: Result<Option<T>, HeaderError>, name: HeaderName) -> Result<T, DialogError> {
    value?.ok_or(DialogError::MissingHeader(name))
}

fn call_id(headers: &Headers) -> Result<String, DialogError> {
    headers
        .call_id()
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or(DialogError::MissingHeader(HeaderName::CallId))
}

fn tag_of(addr: &NameAddr, header: HeaderName) -> Result<String, DialogError> {
    addr.tag()
        .map(str::to_owned)
        .ok_or(DialogError::MissingTag(header))
}

/// Every name-addr of a list header (Record-Route, Route), across lines, in order.
fn name_addr_list(headers: &Headers, name: HeaderName) -> Result<Vec<NameAddr>, DialogError> {
    let mut out = Vec::new();
    for line in headers.get_all(&name) {
        for item in split_top_level_commas(line) {
            out.push(NameAddr::parse(item).ok_or(HeaderError { name: name.clone() })?);
        }
    }
    Ok(out)
}

/// The URI of the first Contact, if any.
fn contact_uri(headers: &Headers) -> Result<Option<Uri>, DialogError> {
    let Some(line) = headers.get(&HeaderName::Contact) else {
        return Ok(None);
    };
    let first = split_top_level_commas(line).into_iter().next();
    let addr = first.and_then(NameAddr::parse).ok_or(HeaderError {
        name: HeaderName::Contact,
    })?;
    Ok(Some(addr.uri))
}

/// Splits on commas outside quotes and `<…>`.
fn split_top_level_commas(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut in_angle, mut escaped) = (0, false, false, false);
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

fn is_sips(uri: &Uri) -> bool {
    uri.scheme == Scheme::Sips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_route_lists_outside_quotes_and_brackets() {
        let v = r#""a, b" <sip:p1.example.com;lr>, <sip:p2.example.com;lr;x=1,2>"#;
        assert_eq!(split_top_level_commas(v).len(), 2);
        assert!(split_top_level_commas(" , ").is_empty());
    }
}
