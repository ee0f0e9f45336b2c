//! Dialogs by [`DialogId`], for matching in-dialog requests and responses, and for forking:
//! one INVITE (Call-ID + our From tag) may own several early or confirmed dialogs, one per
//! To tag. Ordered by id so that the dialogs of one INVITE are a contiguous range.

use std::collections::BTreeMap;

use sip_msg::{HeaderName, Request, Response};

use super::{Dialog, DialogError, DialogId, DialogState, InDialogError, call_id, required};

/// The dialogs of one user agent (or of one B2BUA leg set).
#[derive(Debug, Clone, Default)]
pub struct DialogStore {
    dialogs: BTreeMap<DialogId, Dialog>,
}

impl DialogStore {
    pub fn new() -> DialogStore {
        DialogStore::default()
    }

    /// Adds a dialog, returning the one it replaces (same id), if any.
    pub fn insert(&mut self, dialog: Dialog) -> Option<Dialog> {
        self.dialogs.insert(dialog.id.clone(), dialog)
    }

    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.dialogs.get(id)
    }

    pub fn get_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.dialogs.get_mut(id)
    }

    pub fn remove(&mut self, id: &DialogId) -> Option<Dialog> {
        self.dialogs.remove(id)
    }

    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// Every dialog created by one initial request: same Call-ID and local tag, any
    /// remote tag (the branches of a fork).
    pub fn dialogs_of<'a>(
        &'a self,
        call_id: &'a str,
        local_tag: &'a str,
    ) -> impl Iterator<Item = &'a Dialog> + 'a {
        let start = DialogId {
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: String::new(),
        };
        self.dialogs
            .range(start..)
            .take_while(move |(id, _)| id.call_id == call_id && id.local_tag == local_tag)
            .map(|(_, d)| d)
    }

    /// Feeds a response to our dialog-creating `request`. Creates the dialog of a new To tag
    /// (forking: each answering branch gets its own), updates a known one, and on a final
    /// non-2xx ends every early dialog of the request. Returns the id of the dialog the
    /// response belongs to, or `None` when it belongs to none (100, 1xx without tag,
    /// final failure).
    pub fn on_uac_response(
        &mut self,
        request: &Request,
        response: &Response,
    ) -> Result<Option<DialogId>, DialogError> {
        let from = required(response.headers.from_header(), HeaderName::From)?;
        let to = required(response.headers.to_header(), HeaderName::To)?;
        let call_id = call_id(&response.headers)?;
        let local_tag = from
            .tag()
            .ok_or(DialogError::MissingTag(HeaderName::From))?;
        if response.status.as_u16() >= 300 {
            let early: Vec<DialogId> = self
                .dialogs_of(&call_id, local_tag)
                .filter(|d| d.state == DialogState::Early)
                .map(|d| d.id.clone())
                .collect();
            for id in early {
                self.dialogs.remove(&id);
            }
            return Ok(None);
        }
        let Some(remote_tag) = to.tag() else {
            return Ok(None);
        };
        if response.status.as_u16() == 100 {
            return Ok(None);
        }
        let id = DialogId {
            call_id,
            local_tag: local_tag.to_owned(),
            remote_tag: remote_tag.to_owned(),
        };
        match self.dialogs.get_mut(&id) {
            Some(dialog) => dialog.on_response(response)?,
            None => {
                self.dialogs
                    .insert(id.clone(), Dialog::new_uac(request, response)?);
            }
        }
        Ok(Some(id))
    }

    /// The dialog a response to one of our in-dialog requests belongs to.
    pub fn find_for_response(&self, response: &Response) -> Option<&Dialog> {
        let from = response.headers.from_header().ok()??;
        let to = response.headers.to_header().ok()??;
        self.dialogs.get(&DialogId {
            call_id: response.headers.call_id()?.to_owned(),
            local_tag: from.tag()?.to_owned(),
            remote_tag: to.tag()?.to_owned(),
        })
    }

    /// Routes a received request. `Ok(None)`: no To tag, so not within a dialog (a new
    /// request for the TU). `Ok(Some(id))`: accepted by that dialog. `Err`: answer with
    /// [`InDialogError::response`] (481 unknown dialog, 500 CSeq out of order, 400).
    pub fn on_request(&mut self, request: &Request) -> Result<Option<DialogId>, InDialogError> {
        let to = required(request.headers.to_header(), HeaderName::To)
            .map_err(InDialogError::Malformed)?;
        let Some(local_tag) = to.tag() else {
            return Ok(None);
        };
        let from = required(request.headers.from_header(), HeaderName::From)
            .map_err(InDialogError::Malformed)?;
        let id = DialogId {
            call_id: call_id(&request.headers).map_err(InDialogError::Malformed)?,
            local_tag: local_tag.to_owned(),
            remote_tag: from.tag().unwrap_or_default().to_owned(),
        };
        let dialog = self
            .dialogs
            .get_mut(&id)
            .ok_or(InDialogError::UnknownDialog)?;
        dialog.on_request(request)?;
        Ok(Some(id))
    }

    /// Drops terminated dialogs; returns how many went.
    pub fn remove_terminated(&mut self) -> usize {
        let before = self.dialogs.len();
        self.dialogs
            .retain(|_, d| d.state != DialogState::Terminated);
        before - self.dialogs.len()
    }
}
