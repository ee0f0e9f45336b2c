//! Each controller's own judgments, stored for the others (`calanque/v1/failover/views/
//! <instance>`, a `calanque.v1.FailoverPeerView`) under a lease of its own: the leader fails a
//! datacenter over only when the views agree (ADR 0018, the planner's second opinion). The key
//! lives while its controller runs and reaches etcd's quorum, so the view of a controller lost
//! with its datacenter disappears within the lease's TTL.

use prost::Message as _;
use proto::v1;

use crate::planner::PeerView;

/// Where the views are kept, one key per controller instance.
pub const VIEWS_PREFIX: &str = "calanque/v1/failover/views/";

/// The key of `instance`'s view.
pub fn view_key(instance: &str) -> String {
    format!("{VIEWS_PREFIX}{instance}")
}

/// A stored view that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable failover view: {0}")]
pub struct ViewError(#[from] prost::DecodeError);

/// The stored bytes of `view`.
pub fn encode(view: &PeerView) -> Vec<u8> {
    v1::FailoverPeerView {
        instance: view.instance.clone(),
        seen: view.seen.clone(),
        failed: view.failed.clone(),
    }
    .encode_to_vec()
}

/// Reads stored bytes.
pub fn decode(bytes: &[u8]) -> Result<PeerView, ViewError> {
    let stored = v1::FailoverPeerView::decode(bytes)?;
    Ok(PeerView {
        instance: stored.instance,
        seen: stored.seen,
        failed: stored.failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PREFIX;

    #[test]
    fn a_view_reads_back_as_written() {
        let view = PeerView {
            instance: "failover-w".into(),
            seen: vec!["dc-a".into(), "dc-b".into()],
            failed: vec!["dc-b".into()],
        };
        assert_eq!(decode(&encode(&view)).unwrap(), view);
        assert_eq!(
            view_key("failover-w"),
            "calanque/v1/failover/views/failover-w"
        );
        // Under the failover prefix: the controller's one listing per round reads the views
        // with the state.
        assert!(view_key("x").starts_with(PREFIX));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
