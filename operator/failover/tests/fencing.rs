//! Leadership and fencing on both stores (a real etcd started by the harness, and the embedded
//! store): a deposed leader — its lease revoked from outside, or expired while it was paused —
//! still holding its fence cannot write, even when it believes it leads; the campaign admits
//! one leader; the leadership task stops leading at once when the lease goes, and another
//! takes over.

// The cases are shared functions, not `#[test]`s, so clippy's test allowance does not reach
// them; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use failover::leader::{FencedOutcome, Held, Leadership, LeadershipConfig, campaign, fenced_txn};
use failover::state::{FailoverState, LEADER_KEY, STATE_KEY, WriteStamp};
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Compare, Op, Store};
use testkit::etcd::EtcdServer;
use tokio::time::{Instant, sleep, timeout};

enum Backend {
    Embedded {
        store: Arc<EmbeddedStore>,
        _dir: tempfile::TempDir,
    },
    Etcd {
        store: Arc<EtcdStore>,
        _server: EtcdServer,
    },
}

impl Backend {
    async fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .unwrap();
        Backend::Embedded {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    async fn etcd() -> Backend {
        let server = tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
        let store = EtcdStore::connect(&EtcdConfig::new([server.endpoint()]))
            .await
            .unwrap();
        Backend::Etcd {
            store: Arc::new(store),
            _server: server,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Embedded { store, .. } => store.clone(),
            Backend::Etcd { store, .. } => store.clone(),
        }
    }
}

/// A state write as the controller makes it: the new state, fenced, on top of what it read.
async fn write_state(store: &dyn Store, held: &Held, writer: &str) -> FencedOutcome {
    let current = store.get(STATE_KEY).await.unwrap();
    let stamp = WriteStamp {
        writer: writer.to_owned(),
        fencing_revision: held.fence.revision,
        at_unix_ms: 0,
    };
    let (state, compare) = match &current {
        None => (
            FailoverState::initial("dc-a", &stamp),
            Compare::Absent(STATE_KEY.to_owned()),
        ),
        Some(kv) => {
            let previous = FailoverState::decode(&kv.value).unwrap();
            let action = failover::Action::MarkFailed {
                datacenter: format!("dc-b-{}", previous.writes),
            };
            (
                FailoverState::next(Some(&previous), &action, &stamp).unwrap(),
                Compare::ModRevision(STATE_KEY.to_owned(), kv.mod_revision),
            )
        }
    };
    fenced_txn(
        store,
        held.fence,
        vec![compare],
        vec![Op::Put {
            key: STATE_KEY.to_owned(),
            value: Bytes::from(state.encode()),
            lease: None,
        }],
    )
    .await
    .unwrap()
}

async fn stored_writer(store: &dyn Store) -> (String, u64) {
    let kv = store.get(STATE_KEY).await.unwrap().expect("a state");
    let state = FailoverState::decode(&kv.value).unwrap();
    (state.writer, state.writes)
}

mod cases {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    /// Revoked from outside: the deposed leader's write is refused, before and after another
    /// leader takes the key; the new leader's write goes through.
    pub(super) async fn a_leader_whose_lease_was_revoked_cannot_write(b: &Backend) {
        let store = b.store();
        let s = store.as_ref();
        let c1 = campaign(s, LEADER_KEY, "c1", TTL)
            .await
            .unwrap()
            .expect("c1 leads");
        assert!(
            campaign(s, LEADER_KEY, "c2", TTL).await.unwrap().is_none(),
            "a second leader"
        );
        assert!(matches!(
            write_state(s, &c1, "c1").await,
            FencedOutcome::Applied(_)
        ));
        s.revoke_lease(c1.fence.lease).await.unwrap();
        assert_eq!(s.get(LEADER_KEY).await.unwrap(), None);
        // c1 still believes it leads (its valid_until has not passed): the store refuses.
        assert!(c1.fence_at(Instant::now()).is_some());
        assert_eq!(write_state(s, &c1, "c1").await, FencedOutcome::Deposed);
        let c2 = campaign(s, LEADER_KEY, "c2", TTL)
            .await
            .unwrap()
            .expect("c2 leads");
        assert!(c2.fence.revision > c1.fence.revision);
        assert_eq!(write_state(s, &c1, "c1").await, FencedOutcome::Deposed);
        assert!(matches!(
            write_state(s, &c2, "c2").await,
            FencedOutcome::Applied(_)
        ));
        assert_eq!(stored_writer(s).await, ("c2".to_owned(), 2));
    }

    /// Paused past its TTL (no keep-alive): the lease expires in the store, and the write the
    /// leader makes when it wakes up is refused.
    pub(super) async fn a_leader_paused_past_its_ttl_cannot_write(b: &Backend) {
        let store = b.store();
        let s = store.as_ref();
        let c1 = campaign(s, LEADER_KEY, "c1", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            write_state(s, &c1, "c1").await,
            FencedOutcome::Applied(_)
        ));
        timeout(Duration::from_secs(10), async {
            while s.get(LEADER_KEY).await.unwrap().is_some() {
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the lease expires");
        assert_eq!(write_state(s, &c1, "c1").await, FencedOutcome::Deposed);
        assert_eq!(stored_writer(s).await, ("c1".to_owned(), 1));
    }

    /// A conflicting write (the state changed since it was read) is told apart from a lost
    /// fence.
    pub(super) async fn a_stale_read_is_a_conflict_not_a_deposition(b: &Backend) {
        let store = b.store();
        let s = store.as_ref();
        let c1 = campaign(s, LEADER_KEY, "c1", TTL).await.unwrap().unwrap();
        let outcome = fenced_txn(
            s,
            c1.fence,
            vec![Compare::ModRevision(STATE_KEY.to_owned(), 1)],
            vec![Op::Put {
                key: STATE_KEY.to_owned(),
                value: Bytes::from_static(b"x"),
                lease: None,
            }],
        )
        .await
        .unwrap();
        assert_eq!(outcome, FencedOutcome::Conflict);
    }

    /// Two leadership tasks: exactly one leads; revoking its lease from outside makes it stop
    /// leading at once (within a renewal period) and the other takes over; resigning hands over
    /// without waiting for the TTL.
    pub(super) async fn the_leadership_task_follows_the_lease(b: &Backend) {
        let store = b.store();
        let config = |instance: &str| LeadershipConfig {
            key: LEADER_KEY,
            instance: instance.to_owned(),
            ttl: TTL,
            campaign_every: Duration::from_millis(100),
        };
        let c1 = Leadership::spawn(store.clone(), config("c1"));
        let c2 = Leadership::spawn(store.clone(), config("c2"));
        let leading = |l: &Leadership| l.current().is_some();
        eventually(Duration::from_secs(5), || leading(&c1) || leading(&c2)).await;
        sleep(Duration::from_millis(500)).await;
        assert!(leading(&c1) ^ leading(&c2), "exactly one leader");
        let (leader, follower) = if leading(&c1) { (c1, c2) } else { (c2, c1) };
        let fence = leader.current().unwrap().fence;
        store.revoke_lease(fence.lease).await.unwrap();
        let revoked = Instant::now();
        eventually(Duration::from_secs(5), || !leading(&leader)).await;
        let noticed = revoked.elapsed();
        assert!(
            noticed < TTL,
            "the old leader acted on a revoked lease for {noticed:?}"
        );
        eventually(Duration::from_secs(5), || {
            leading(&follower) || leading(&leader)
        })
        .await;
        // Whoever leads now holds a new fence; resigning hands over at once.
        let (now_leading, other) = if leading(&follower) {
            (follower, leader)
        } else {
            (leader, follower)
        };
        assert_ne!(now_leading.current().unwrap().fence, fence);
        now_leading.stop().await;
        let resigned = Instant::now();
        eventually(Duration::from_secs(5), || leading(&other)).await;
        assert!(
            resigned.elapsed() < TTL,
            "took {:?} after a resignation",
            resigned.elapsed()
        );
        other.stop().await;
    }

    async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(started.elapsed() < limit, "not within {limit:?}");
            sleep(Duration::from_millis(20)).await;
        }
    }
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::Backend::embedded().await;
                    super::cases::$case(&backend).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::Backend::etcd().await;
                    super::cases::$case(&backend).await;
                }
            )*
        }
    };
}

on_both_stores!(
    a_leader_whose_lease_was_revoked_cannot_write,
    a_leader_paused_past_its_ttl_cannot_write,
    a_stale_read_is_a_conflict_not_a_deposition,
    the_leadership_task_follows_the_lease,
);
