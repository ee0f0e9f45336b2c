//! The reconciler's election on a real etcd (started by the harness), as `calanque-operator run
//! --etcd` campaigns: two instances at `calanque/v1/operator/leader` — exactly one leads and
//! its write gate opens; revoking the leader's lease makes the other lead within a renewal
//! period (a third of the TTL); resigning hands over at once; the failover controller's
//! election, on its own key, does not stand in the way.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use failover::leader::{Leadership, LeadershipConfig, campaign};
use futures::StreamExt as _;
use operator::leadership::{LEADER_KEY, WriteGate};
use store::Store;
use store::etcd::{EtcdConfig, EtcdStore};
use testkit::etcd::EtcdServer;
use tokio::time::{Instant, sleep, timeout};

/// What the binary uses by default: 5 s, renewed every third, a follower looking every
/// quarter.
const TTL: Duration = Duration::from_secs(5);

fn instance(store: &Arc<dyn Store>, name: &str) -> Leadership {
    Leadership::spawn(
        store.clone(),
        LeadershipConfig {
            key: LEADER_KEY,
            instance: name.to_owned(),
            ttl: TTL,
            campaign_every: TTL / 4,
        },
    )
}

async fn until(limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_leads_and_the_other_takes_over_within_a_renewal_period() {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&EtcdConfig::new([server.endpoint()]))
            .await
            .unwrap(),
    );
    // The failover controller's leader holds its own key: it does not take the operator's.
    let failover_leader = campaign(
        store.as_ref(),
        failover::state::LEADER_KEY,
        "failover-dc-a",
        TTL,
    )
    .await
    .unwrap()
    .expect("the failover controller leads");

    let a = instance(&store, "operator-dc-a");
    let b = instance(&store, "operator-dc-b");
    let gates = [
        WriteGate::Elected(a.handle()),
        WriteGate::Elected(b.handle()),
    ];
    let mut acquisitions = [
        gates[0].acquisitions().boxed(),
        gates[1].acquisitions().boxed(),
    ];
    until(Duration::from_secs(5), || {
        gates.iter().any(WriteGate::leads)
    })
    .await;
    // Past a renewal, still exactly one.
    sleep(TTL / 3 + Duration::from_millis(200)).await;
    let leading: Vec<bool> = gates.iter().map(WriteGate::leads).collect();
    assert!(leading[0] ^ leading[1], "exactly one leader: {leading:?}");
    let (leader, follower) = if leading[0] { (0, 1) } else { (1, 0) };
    let holder = store.get(LEADER_KEY).await.unwrap().expect("the key");
    let expected = if leader == 0 {
        "operator-dc-a"
    } else {
        "operator-dc-b"
    };
    assert_eq!(holder.value.as_ref(), expected.as_bytes());
    timeout(Duration::from_secs(1), acquisitions[leader].next())
        .await
        .expect("the leader's acquisition is signalled")
        .expect("an item");

    // The leader's lease revoked from outside (as if etcd expired it): the follower leads
    // within a renewal period, and the old leader stops believing it leads.
    let fence = [&a, &b][leader].current().unwrap().fence;
    store.revoke_lease(fence.lease).await.unwrap();
    let revoked = Instant::now();
    let took_over = until(Duration::from_secs(5), || gates[follower].leads()).await;
    let stopped = until(Duration::from_secs(5), || {
        [&a, &b][leader]
            .current()
            .is_none_or(|held| held.fence != fence)
    })
    .await;
    println!(
        "revoked: the follower leads after {took_over:?}; the old leader stopped {stopped:?} \
         later ({:?} after the revocation)",
        revoked.elapsed()
    );
    assert!(took_over < TTL / 3, "took {took_over:?}");
    assert!(!gates[leader].leads(), "two leaders after the takeover");
    timeout(Duration::from_secs(1), acquisitions[follower].next())
        .await
        .expect("the new leader's acquisition is signalled")
        .expect("an item");

    // Resigning (SIGTERM) hands back at once.
    let [a, b] = [a, b];
    let (new_leader, old_leader) = if follower == 0 { (a, b) } else { (b, a) };
    new_leader.stop().await;
    let handed = until(Duration::from_secs(5), || gates[leader].leads()).await;
    println!("resigned: the other leads after {handed:?}");
    assert!(handed < TTL / 3, "took {handed:?}");
    old_leader.stop().await;

    // The failover controller's key was never touched.
    let kv = store
        .get(failover::state::LEADER_KEY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.mod_revision, failover_leader.fence.revision);
}
