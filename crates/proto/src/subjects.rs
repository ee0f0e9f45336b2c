//! Every bus subject and bus header name calanque uses, in one place (ARCHITECTURE: "subjects
//! named in one place, versioned"). A subject starts with `calanque.v1.`: a breaking change to a
//! payload gets a new version token, and both versions are served during an upgrade.
//!
//! Payloads are the `calanque.v1` protobuf messages named next to each subject; conventions for
//! headers and error replies are in `proto/calanque/v1/bus.proto`.

use crate::v1::EntryKind;

/// Prefix of every subject of this version of the contracts.
pub const PREFIX: &str = "calanque.v1";

/// Header naming the full protobuf type of the payload (e.g. `calanque.v1.DirectoryChange`).
pub const TYPE_HEADER: &str = "calanque-type";

/// W3C trace context header (one call is one trace across services).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// W3C trace state header, travelling with [`TRACEPARENT_HEADER`].
pub const TRACESTATE_HEADER: &str = "tracestate";

/// `calanque.v1.directory.get`: request [`crate::v1::GetRequest`], reply
/// [`crate::v1::GetResponse`] or [`crate::v1::BusError`]. Served by the directory's queue group
/// [`DIRECTORY_QUEUE_GROUP`].
pub const DIRECTORY_GET: &str = "calanque.v1.directory.get";

/// Wildcard matching every directory change event, for caches that watch every kind.
pub const DIRECTORY_CHANGED_ALL: &str = "calanque.v1.directory.changed.>";

/// Queue group of the directory service's replicas (they share requests).
pub const DIRECTORY_QUEUE_GROUP: &str = "directory";

/// `calanque.v1.edge.bans`: [`crate::v1::Ban`] events, published by the edge replica that bans a
/// source and applied by every replica (a ban reaches all edges within a second).
pub const EDGE_BANS: &str = "calanque.v1.edge.bans";

/// `calanque.v1.callcontrol.requests`: [`crate::v1::EdgeRequest`], out-of-dialog requests the
/// edges hand to call-control (queue group [`CALL_CONTROL_QUEUE_GROUP`]). Call-control answers
/// on the edge's [`edge_responses`] subject.
pub const CALL_CONTROL_REQUESTS: &str = "calanque.v1.callcontrol.requests";

/// Queue group of the call-control replicas (they share new requests).
pub const CALL_CONTROL_QUEUE_GROUP: &str = "call-control";

/// `calanque.v1.edge.<edge-id>.responses`: [`crate::v1::EdgeResponse`] for the server
/// transactions that edge holds.
pub fn edge_responses(edge_id: &str) -> String {
    format!("{PREFIX}.edge.{edge_id}.responses")
}

/// `calanque.v1.edge.<edge-id>.deliver`: [`crate::v1::FlowDelivery`], messages that edge must
/// send over a connection it holds, or responses that arrived for its transactions on another
/// edge's connection.
pub fn edge_deliver(edge_id: &str) -> String {
    format!("{PREFIX}.edge.{edge_id}.deliver")
}

/// `calanque.v1.edge.<edge-id>.send`: [`crate::v1::EdgeSend`], requests call-control asks that
/// edge to send (it holds the flow); results come back as [`crate::v1::EdgeSendResult`] on the
/// request's `reply_subject`.
pub fn edge_send(edge_id: &str) -> String {
    format!("{PREFIX}.edge.{edge_id}.send")
}

/// `calanque.v1.media.allocate`: [`crate::v1::MediaRequest`] with `allocate`, answered with a
/// [`crate::v1::MediaReply`] by one member of the media relays' queue group
/// [`MEDIA_QUEUE_GROUP`]. The allocation names the replica (`media_id`) that owns the session.
pub const MEDIA_ALLOCATE: &str = "calanque.v1.media.allocate";

/// Queue group of the media relay replicas (they share allocations).
pub const MEDIA_QUEUE_GROUP: &str = "media";

/// `calanque.v1.media.<media-id>.control`: [`crate::v1::MediaRequest`] (update, release, stats,
/// play, stop_playback) for the sessions of that replica, answered with a
/// [`crate::v1::MediaReply`].
pub fn media_control(media_id: &str) -> String {
    format!("{PREFIX}.media.{media_id}.control")
}

/// `calanque.v1.media.events`: [`crate::v1::MediaEvent`] (dead media), published by the media
/// relays for call-control.
pub const MEDIA_EVENTS: &str = "calanque.v1.media.events";

/// `calanque.v1.media.heartbeats`: [`crate::v1::Heartbeat`], published by every media relay
/// replica each interval and read by every call-control replica (ADR 0020).
pub const MEDIA_HEARTBEATS: &str = "calanque.v1.media.heartbeats";

/// `calanque.v1.edge.heartbeats`: [`crate::v1::Heartbeat`], published by every SIP edge each
/// interval and read by every call-control replica (ADR 0020).
pub const EDGE_HEARTBEATS: &str = "calanque.v1.edge.heartbeats";

/// `calanque.v1.calls.records`: [`crate::v1::CallRecord`], one per ended call, published by
/// call-control (ADR 0013).
pub const CALL_RECORDS: &str = "calanque.v1.calls.records";

/// `calanque.v1.failover.state`: [`crate::v1::FailoverState`], published by the leading failover
/// controller after each write of the state and again periodically (ADR 0018); services act on
/// the highest epoch they have seen.
pub const FAILOVER_STATE: &str = "calanque.v1.failover.state";

/// Full protobuf type names, the values of [`TYPE_HEADER`].
pub mod types {
    /// [`crate::v1::DirectoryChange`].
    pub const DIRECTORY_CHANGE: &str = "calanque.v1.DirectoryChange";
    /// [`crate::v1::GetRequest`].
    pub const GET_REQUEST: &str = "calanque.v1.GetRequest";
    /// [`crate::v1::GetResponse`].
    pub const GET_RESPONSE: &str = "calanque.v1.GetResponse";
    /// [`crate::v1::BusError`].
    pub const BUS_ERROR: &str = "calanque.v1.BusError";
    /// [`crate::v1::Ban`].
    pub const BAN: &str = "calanque.v1.Ban";
    /// [`crate::v1::EdgeRequest`].
    pub const EDGE_REQUEST: &str = "calanque.v1.EdgeRequest";
    /// [`crate::v1::EdgeResponse`].
    pub const EDGE_RESPONSE: &str = "calanque.v1.EdgeResponse";
    /// [`crate::v1::FlowDelivery`].
    pub const FLOW_DELIVERY: &str = "calanque.v1.FlowDelivery";
    /// [`crate::v1::EdgeSend`].
    pub const EDGE_SEND: &str = "calanque.v1.EdgeSend";
    /// [`crate::v1::EdgeSendResult`].
    pub const EDGE_SEND_RESULT: &str = "calanque.v1.EdgeSendResult";
    /// [`crate::v1::MediaRequest`].
    pub const MEDIA_REQUEST: &str = "calanque.v1.MediaRequest";
    /// [`crate::v1::MediaReply`].
    pub const MEDIA_REPLY: &str = "calanque.v1.MediaReply";
    /// [`crate::v1::MediaEvent`].
    pub const MEDIA_EVENT: &str = "calanque.v1.MediaEvent";
    /// [`crate::v1::Heartbeat`].
    pub const HEARTBEAT: &str = "calanque.v1.Heartbeat";
    /// [`crate::v1::CallRecord`].
    pub const CALL_RECORD: &str = "calanque.v1.CallRecord";
    /// [`crate::v1::FailoverState`].
    pub const FAILOVER_STATE: &str = "calanque.v1.FailoverState";
}

/// Every entry kind that has a subject token, in the proto's order.
pub const ENTRY_KINDS: [EntryKind; 9] = [
    EntryKind::Site,
    EntryKind::User,
    EntryKind::Extension,
    EntryKind::Device,
    EntryKind::HuntGroup,
    EntryKind::PickupGroup,
    EntryKind::ClassOfService,
    EntryKind::Trunk,
    EntryKind::Route,
];

/// The subject token (and import/export name) of a kind; `None` for `Unspecified`.
pub fn kind_token(kind: EntryKind) -> Option<&'static str> {
    Some(match kind {
        EntryKind::Unspecified => return None,
        EntryKind::Site => "site",
        EntryKind::User => "user",
        EntryKind::Extension => "extension",
        EntryKind::Device => "device",
        EntryKind::HuntGroup => "hunt_group",
        EntryKind::PickupGroup => "pickup_group",
        EntryKind::ClassOfService => "class_of_service",
        EntryKind::Trunk => "trunk",
        EntryKind::Route => "route",
    })
}

/// The kind named by a subject token (the inverse of [`kind_token`]).
pub fn kind_from_token(token: &str) -> Option<EntryKind> {
    ENTRY_KINDS
        .into_iter()
        .find(|k| kind_token(*k) == Some(token))
}

/// `calanque.v1.directory.changed.<kind>`: [`crate::v1::DirectoryChange`] events published after
/// each committed change. `None` for `Unspecified`.
pub fn directory_changed(kind: EntryKind) -> Option<String> {
    kind_token(kind).map(|token| format!("{PREFIX}.directory.changed.{token}"))
}

/// Whether `subject` is a valid NATS subject to publish on or subscribe to: non-empty tokens of
/// printable ASCII without spaces, separated by single dots; `*` only as a whole token and `>`
/// only as the whole last token (when `wildcards` is true; never when publishing).
pub fn is_valid_subject(subject: &str, wildcards: bool) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len() - 1;
    tokens.iter().enumerate().all(|(i, token)| {
        if token.is_empty() {
            return false;
        }
        if *token == "*" || (*token == ">" && i == last) {
            return wildcards;
        }
        token
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_subjects() -> Vec<String> {
        let mut subjects = vec![
            DIRECTORY_GET.to_owned(),
            EDGE_BANS.to_owned(),
            CALL_CONTROL_REQUESTS.to_owned(),
            edge_responses("edge-1"),
            edge_deliver("edge-1"),
            edge_send("edge-1"),
            MEDIA_ALLOCATE.to_owned(),
            media_control("media-1"),
            MEDIA_EVENTS.to_owned(),
            MEDIA_HEARTBEATS.to_owned(),
            EDGE_HEARTBEATS.to_owned(),
            CALL_RECORDS.to_owned(),
            FAILOVER_STATE.to_owned(),
        ];
        subjects.extend(ENTRY_KINDS.iter().filter_map(|k| directory_changed(*k)));
        subjects
    }

    #[test]
    fn every_publish_subject_is_a_valid_versioned_nats_subject() {
        let subjects = all_subjects();
        assert_eq!(subjects.len(), 13 + ENTRY_KINDS.len());
        for subject in subjects {
            assert!(is_valid_subject(&subject, false), "{subject}");
            assert!(subject.starts_with("calanque.v1."), "{subject}");
        }
    }

    #[test]
    fn the_change_wildcard_is_valid_and_covers_every_kind_subject() {
        assert!(is_valid_subject(DIRECTORY_CHANGED_ALL, true));
        assert!(!is_valid_subject(DIRECTORY_CHANGED_ALL, false));
        let stem = DIRECTORY_CHANGED_ALL.trim_end_matches('>');
        for kind in ENTRY_KINDS {
            let subject = directory_changed(kind).unwrap();
            let rest = subject.strip_prefix(stem).unwrap();
            assert!(!rest.is_empty() && !rest.contains('.'), "{subject}");
        }
    }

    #[test]
    fn kind_tokens_are_distinct_single_tokens_and_invert() {
        let mut seen = std::collections::HashSet::new();
        for kind in ENTRY_KINDS {
            let token = kind_token(kind).unwrap();
            assert!(seen.insert(token), "duplicate token {token}");
            assert!(is_valid_subject(token, false) && !token.contains('.'));
            assert_eq!(kind_from_token(token), Some(kind));
        }
        assert_eq!(kind_token(EntryKind::Unspecified), None);
        assert_eq!(directory_changed(EntryKind::Unspecified), None);
        assert_eq!(kind_from_token("nope"), None);
    }

    #[test]
    fn the_subject_checker_rejects_malformed_subjects() {
        for bad in ["", "a..b", ".a", "a.", "a b", "a.\tb", "a.>.b", "a.b*", "é"] {
            assert!(!is_valid_subject(bad, true), "{bad:?} accepted");
        }
        assert!(is_valid_subject("a.*.c", true));
        assert!(!is_valid_subject("a.*.c", false));
    }

    #[test]
    fn type_names_match_the_generated_messages() {
        use prost::Name as _;
        assert_eq!(
            types::DIRECTORY_CHANGE,
            crate::v1::DirectoryChange::full_name()
        );
        assert_eq!(types::GET_REQUEST, crate::v1::GetRequest::full_name());
        assert_eq!(types::GET_RESPONSE, crate::v1::GetResponse::full_name());
        assert_eq!(types::BUS_ERROR, crate::v1::BusError::full_name());
        assert_eq!(types::BAN, crate::v1::Ban::full_name());
        assert_eq!(types::EDGE_REQUEST, crate::v1::EdgeRequest::full_name());
        assert_eq!(types::EDGE_RESPONSE, crate::v1::EdgeResponse::full_name());
        assert_eq!(types::FLOW_DELIVERY, crate::v1::FlowDelivery::full_name());
        assert_eq!(types::EDGE_SEND, crate::v1::EdgeSend::full_name());
        assert_eq!(
            types::EDGE_SEND_RESULT,
            crate::v1::EdgeSendResult::full_name()
        );
        assert_eq!(types::MEDIA_REQUEST, crate::v1::MediaRequest::full_name());
        assert_eq!(types::MEDIA_REPLY, crate::v1::MediaReply::full_name());
        assert_eq!(types::MEDIA_EVENT, crate::v1::MediaEvent::full_name());
        assert_eq!(types::CALL_RECORD, crate::v1::CallRecord::full_name());
        assert_eq!(types::FAILOVER_STATE, crate::v1::FailoverState::full_name());
        assert_eq!(types::HEARTBEAT, crate::v1::Heartbeat::full_name());
    }

    #[test]
    fn media_subjects_are_distinct_and_the_control_subject_names_its_replica() {
        assert_ne!(MEDIA_ALLOCATE, MEDIA_EVENTS);
        assert!(!MEDIA_QUEUE_GROUP.is_empty() && !MEDIA_QUEUE_GROUP.contains(char::is_whitespace));
        let control = media_control("media-7");
        assert_eq!(control, "calanque.v1.media.media-7.control");
        assert_ne!(control, media_control("media-8"));
        // A replica's control subject is caught by neither shared subject.
        assert!(control != MEDIA_ALLOCATE && control != MEDIA_EVENTS);
    }
}
