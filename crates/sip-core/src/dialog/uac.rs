//! Dialogs we initiated (§12.1.2, §13.2.2.4): creation from a provisional response with a To
//! tag (early) or a 2xx (confirmed), updates from later responses, and the ACK of a 2xx.

use bytes::Bytes;
use sip_msg::{HeaderName, Method, Request, Response};

use super::{
    Dialog, DialogError, DialogId, DialogRole, DialogState, call_id, contact_uri, creates_dialog,
    is_sips, is_target_refresh, name_addr_list, required, tag_of,
};

impl Dialog {
    /// The dialog created by `response` to our dialog-creating `request` (INVITE, SUBSCRIBE,
    /// REFER). A 101–199 with a To tag makes an early dialog, a 2xx a confirmed one. Each
    /// To tag is its own dialog: a forked INVITE yields one per answering branch.
    pub fn new_uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        if !creates_dialog(&request.method) {
            return Err(DialogError::MethodNotDialogCreating(request.method.clone()));
        }
        let status = response.status;
        let state = match status.as_u16() {
            101..=199 => DialogState::Early,
            200..=299 => DialogState::Confirmed,
            _ => return Err(DialogError::StatusNotDialogCreating(status)),
        };
        let to = required(response.headers.to_header(), HeaderName::To)?;
        let from = required(request.headers.from_header(), HeaderName::From)?;
        let remote_tag = tag_of(&to, HeaderName::To)?;
        let local_tag = tag_of(&from, HeaderName::From)?;
        let cseq = required(request.headers.cseq(), HeaderName::CSeq)?;
        let remote_target = match contact_uri(&response.headers)? {
            Some(uri) => uri,
            // A 2xx must carry the target; a provisional one may not (the target is then
            // updated by a later response).
            None if state == DialogState::Confirmed => return Err(DialogError::MissingContact),
            None => request.uri.clone(),
        };
        let mut route_set = name_addr_list(&response.headers, HeaderName::RecordRoute)?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id(&request.headers)?,
                local_tag,
                remote_tag,
            },
            state,
            role: DialogRole::Uac,
            local: from,
            remote: to,
            local_target: contact_uri(&request.headers)?,
            remote_target,
            route_set,
            local_seq: Some(cseq.seq),
            remote_seq: None,
            secure: is_sips(&request.uri),
            invite_seq: (request.method == Method::Invite).then_some(cseq.seq),
            last_ack: None,
        })
    }

    /// Applies a response to a request we sent in this dialog (including further responses
    /// to the initial INVITE): a 2xx confirms an early dialog (route set recomputed from its
    /// Record-Route), a 2xx to a target refresh replaces the remote target, a non-2xx final
    /// answer to the initial INVITE ends an early dialog, and 481/408 end the dialog (§12.2.1.2).
    pub fn on_response(&mut self, response: &Response) -> Result<(), DialogError> {
        let to = required(response.headers.to_header(), HeaderName::To)?;
        let from = required(response.headers.from_header(), HeaderName::From)?;
        let call_id = call_id(&response.headers)?;
        let (local_tag, remote_tag) = (from.tag().unwrap_or(""), to.tag().unwrap_or(""));
        // A final non-2xx without a To tag (e.g. from a proxy) still ends our early dialogs.
        let ours = self.owns(&call_id, local_tag, remote_tag)
            || (self.id.call_id == call_id && self.id.local_tag == local_tag && to.tag().is_none());
        if !ours {
            return Err(DialogError::DialogMismatch);
        }
        let cseq = required(response.headers.cseq(), HeaderName::CSeq)?;
        let status = response.status.as_u16();
        if self.state == DialogState::Terminated {
            return Ok(());
        }
        match status {
            481 | 408 => self.state = DialogState::Terminated,
            200..=299 => {
                if self.state == DialogState::Early && cseq.method == Method::Invite {
                    let mut routes = name_addr_list(&response.headers, HeaderName::RecordRoute)?;
                    routes.reverse();
                    self.route_set = routes;
                    self.state = DialogState::Confirmed;
                }
                if is_target_refresh(&cseq.method)
                    && let Some(target) = contact_uri(&response.headers)?
                {
                    self.remote_target = target;
                }
            }
            101..=199 if self.state == DialogState::Early => {
                if let Some(target) = contact_uri(&response.headers)? {
                    self.remote_target = target;
                }
            }
            300..=699
                if self.state == DialogState::Early
                    && cseq.method == Method::Invite
                    && Some(cseq.seq) == self.invite_seq =>
            {
                self.state = DialogState::Terminated;
            }
            _ => {}
        }
        Ok(())
    }

    /// The ACK for a 2xx to an INVITE of this dialog (§13.2.2.4): CSeq number of that
    /// INVITE, the dialog's route set and remote target. A retransmitted 2xx gets the same
    /// ACK again. No Via (see the module documentation).
    pub fn ack_for_2xx(&mut self, response: &Response) -> Result<Request, DialogError> {
        self.ack_with_body(response, None)
    }

    /// As [`Dialog::ack_for_2xx`], carrying an SDP answer (or other body) when the INVITE had
    /// no offer.
    pub fn ack_for_2xx_with_body(
        &mut self,
        response: &Response,
        content_type: &str,
        body: Bytes,
    ) -> Result<Request, DialogError> {
        self.ack_with_body(response, Some((content_type, body)))
    }

    fn ack_with_body(
        &mut self,
        response: &Response,
        body: Option<(&str, Bytes)>,
    ) -> Result<Request, DialogError> {
        let cseq = required(response.headers.cseq(), HeaderName::CSeq)?;
        if !response.status.is_success() || cseq.method != Method::Invite {
            return Err(DialogError::NotInvite2xx);
        }
        let to = required(response.headers.to_header(), HeaderName::To)?;
        let from = required(response.headers.from_header(), HeaderName::From)?;
        let call_id = call_id(&response.headers)?;
        if !self.owns(&call_id, from.tag().unwrap_or(""), to.tag().unwrap_or("")) {
            return Err(DialogError::DialogMismatch);
        }
        if let Some(ack) = &self.last_ack
            && ack
                .headers
                .cseq()
                .ok()
                .flatten()
                .is_some_and(|c| c.seq == cseq.seq)
        {
            return Ok(ack.clone());
        }
        let mut ack = self.request_skeleton(Method::Ack, cseq.seq);
        if let Some((content_type, body)) = body {
            ack.headers.push(HeaderName::ContentType, content_type);
            ack.body = body;
        }
        self.last_ack = Some(ack.clone());
        Ok(ack)
    }
}
