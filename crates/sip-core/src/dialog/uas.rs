//! Dialogs we accepted (§12.1.1) and the checks on every request received within a dialog
//! (§12.2.2), whichever side created it.

use sip_msg::{HeaderName, Method, Request, Response, StatusCode, Uri, build_response};

use super::{
    Dialog, DialogError, DialogId, DialogRole, DialogState, InDialogError, call_id, contact_uri,
    creates_dialog, is_sips, is_target_refresh, name_addr_list, required, tag_of,
};

/// A response that creates or confirms a dialog on the UAS side (§12.1.1): the usual copy
/// of Via/From/To/Call-ID/CSeq with our `to_tag` added, every Record-Route of the request
/// copied in order, and our Contact.
pub fn dialog_response(
    request: &Request,
    status: StatusCode,
    to_tag: &str,
    contact: &Uri,
) -> Response {
    let mut response = build_response(request, status, Some(to_tag));
    if (101..=299).contains(&status.as_u16()) {
        for rr in request.headers.get_all(&HeaderName::RecordRoute) {
            response.headers.push(HeaderName::RecordRoute, rr);
        }
    }
    response
        .headers
        .push(HeaderName::Contact, format!("<{contact}>"));
    response
}

impl Dialog {
    /// The dialog created when we answer the dialog-creating `request` with `response`
    /// (a 101–299 carrying our To tag, e.g. from [`dialog_response`]). The route set is the
    /// request's Record-Route in order; the remote target its Contact.
    pub fn new_uas(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        if !creates_dialog(&request.method) {
            return Err(DialogError::MethodNotDialogCreating(request.method.clone()));
        }
        let state = match response.status.as_u16() {
            101..=199 => DialogState::Early,
            200..=299 => DialogState::Confirmed,
            _ => return Err(DialogError::StatusNotDialogCreating(response.status)),
        };
        let from = required(request.headers.from_header(), HeaderName::From)?;
        let to = required(response.headers.to_header(), HeaderName::To)?;
        let remote_tag = tag_of(&from, HeaderName::From)?;
        let local_tag = tag_of(&to, HeaderName::To)?;
        let cseq = required(request.headers.cseq(), HeaderName::CSeq)?;
        let remote_target = contact_uri(&request.headers)?.ok_or(DialogError::MissingContact)?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id(&request.headers)?,
                local_tag,
                remote_tag,
            },
            state,
            role: DialogRole::Uas,
            local: to,
            remote: from,
            local_target: contact_uri(&response.headers)?,
            remote_target,
            route_set: name_addr_list(&request.headers, HeaderName::RecordRoute)?,
            local_seq: None,
            remote_seq: Some(cseq.seq),
            secure: is_sips(&request.uri),
            invite_seq: None,
            last_ack: None,
        })
    }

    /// Records a response we sent to the initial request: a 2xx confirms the early dialog,
    /// a final non-2xx ends it.
    pub fn on_local_response(&mut self, response: &Response) {
        if self.state != DialogState::Early {
            return;
        }
        match response.status.as_u16() {
            200..=299 => self.state = DialogState::Confirmed,
            300..=699 => self.state = DialogState::Terminated,
            _ => {}
        }
    }

    /// Checks a request received within this dialog and applies it (§12.2.2): its CSeq must
    /// not be lower than the last one (else 500); it becomes the remote sequence number; a
    /// target refresh with a Contact replaces the remote target; BYE ends the dialog. An ACK
    /// carries the INVITE's CSeq and is exempt from ordering.
    pub fn on_request(&mut self, request: &Request) -> Result<(), InDialogError> {
        let malformed = InDialogError::Malformed;
        let to = required(request.headers.to_header(), HeaderName::To).map_err(malformed)?;
        let from = required(request.headers.from_header(), HeaderName::From).map_err(malformed)?;
        let call_id = call_id(&request.headers).map_err(malformed)?;
        if !self.owns(&call_id, to.tag().unwrap_or(""), from.tag().unwrap_or(""))
            || self.state == DialogState::Terminated
        {
            return Err(InDialogError::UnknownDialog);
        }
        let cseq = required(request.headers.cseq(), HeaderName::CSeq).map_err(malformed)?;
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq
            && cseq.seq < last
        {
            return Err(InDialogError::CSeqOutOfOrder {
                received: cseq.seq,
                last,
            });
        }
        self.remote_seq = Some(cseq.seq);
        if is_target_refresh(&request.method)
            && let Some(target) = contact_uri(&request.headers).map_err(malformed)?
        {
            self.remote_target = target;
        }
        if request.method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }
}
