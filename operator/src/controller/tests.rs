//! The reconciler against a mocked API server (`tower_test::mock::pair`, as kube's
//! `mock_tests.rs` and controller-rs' fixtures do). The mock answers like an API server would
//! and records every request; each test then checks the whole sequence (method, path, query,
//! content type, body), so a request the test does not expect fails it. Failback requests go
//! to an embedded store, whose failback key the mock reads as each request arrives.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use failover::state::FAILBACK_KEY;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use failover::leader::{Leadership, LeadershipConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::failover_view::SnapshotBoard;
use crate::fixtures::{cluster, dc_a_lost_snapshot, healthy_snapshot, t};
use crate::resource::{FAILBACK_ANNOTATION, PbxClusterStatus};

const CLUSTER_PATH: &str = "/apis/calanque.io/v1alpha1/namespaces/calanque/pbxclusters/city";

/// One request the reconciler sent.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
    /// The failover store's failback request when the request arrived (with a store).
    failback_key: Option<String>,
}

impl Recorded {
    /// `(kind, name)` of an apply's body.
    fn object(&self) -> (String, String) {
        (
            self.body["kind"].as_str().unwrap_or_default().to_owned(),
            self.body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type == "application/apply-patch+yaml"
    }
}

/// How the mock API server answers.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Ready replicas per Deployment (default: as many as asked).
    ready: HashMap<String, i32>,
    /// Objects whose apply fails with 500.
    failing: Vec<String>,
    /// Services whose DELETE answers 404.
    missing: Vec<String>,
    /// The PbxCluster changed since it was read: a patch with its old resourceVersion gets 409.
    changed_meanwhile: bool,
    /// The failover store, read as each request arrives.
    store: Option<Arc<dyn Store>>,
    /// Writing under this leadership (alone when `None`).
    gate: Option<WriteGate>,
    /// Once this many requests arrived, the leader's lease is revoked in `store` and the mock
    /// waits for the leadership task to notice before it answers the last one.
    revoke_after: Option<usize>,
}

/// A reconcile's requests, answered by the mock; runs until the client is dropped.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    cluster: PbxCluster,
    behaviour: Behaviour,
) -> Vec<Recorded> {
    let mut recorded = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let failback_key = match &behaviour.store {
            Some(store) => store
                .get(FAILBACK_KEY)
                .await
                .expect("the store answers")
                .map(|kv| String::from_utf8(kv.value.to_vec()).expect("UTF-8")),
            None => None,
        };
        let request = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query,
            content_type,
            body,
            failback_key,
        };
        let (status, answer) = answer(&request, &cluster, &behaviour);
        recorded.push(request);
        if behaviour.revoke_after == Some(recorded.len()) {
            depose(&behaviour).await;
        }
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    recorded
}

/// What an API server would answer.
fn answer(request: &Recorded, cluster: &PbxCluster, behaviour: &Behaviour) -> (StatusCode, Value) {
    let not_found = |name: &str| {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
               "message": format!("{name} not found"), "code": 404})
    };
    if request.path.starts_with(CLUSTER_PATH) {
        let mut answer = serde_json::to_value(cluster).unwrap();
        if request.path.ends_with("/status") {
            answer["status"] = request.body["status"].clone();
        } else if request.content_type == "application/merge-patch+json" {
            // A metadata merge patch (the failback annotation's removal), on a resourceVersion.
            let version = &request.body["metadata"]["resourceVersion"];
            if behaviour.changed_meanwhile && !version.is_null() {
                let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "Conflict", "code": 409, "message": "the object has been modified"});
                return (StatusCode::CONFLICT, conflict);
            }
            let patch = request.body["metadata"]["annotations"].as_object().unwrap();
            let annotations = answer["metadata"]["annotations"].as_object_mut().unwrap();
            for (key, value) in patch {
                if value.is_null() {
                    annotations.remove(key);
                } else {
                    annotations.insert(key.clone(), value.clone());
                }
            }
        } else if request.content_type == "application/json-patch+json" {
            // The finalizer helper's test+add or test+remove.
            let ops = request.body.as_array().unwrap();
            let finalizers = match ops[1]["op"].as_str() {
                Some("add") => json!([FINALIZER]),
                _ => json!([]),
            };
            answer["metadata"]["finalizers"] = finalizers;
        }
        return (StatusCode::OK, answer);
    }
    match request.method.as_str() {
        "PATCH" if request.is_apply() => {
            let (kind, name) = request.object();
            if behaviour.failing.contains(&name) {
                let error = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "InternalError", "message": "etcd timeout", "code": 500});
                return (StatusCode::INTERNAL_SERVER_ERROR, error);
            }
            let mut answer = request.body.clone();
            if kind == "Deployment" {
                let desired = answer["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
                let ready = behaviour.ready.get(&name).copied().unwrap_or(desired);
                answer["status"] = json!({"replicas": desired, "readyReplicas": ready});
            }
            (StatusCode::OK, answer)
        }
        "DELETE" => {
            let name = request.path.rsplit('/').next().unwrap();
            if behaviour.missing.iter().any(|m| m == name) {
                (StatusCode::NOT_FOUND, not_found(name))
            } else {
                (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                )
            }
        }
        _ => (StatusCode::NOT_FOUND, not_found(&request.path)),
    }
}

/// Revokes the lease of `behaviour`'s leader in its store, lets another instance take the
/// leader key, and waits until the leadership task has seen it (within a renewal period).
async fn depose(behaviour: &Behaviour) {
    let (Some(gate), Some(store)) = (&behaviour.gate, &behaviour.store) else {
        panic!("revoke_after needs a gate and a store");
    };
    let WriteGate::Elected(handle) = gate else {
        panic!("revoke_after needs an elected gate");
    };
    let fence = handle.fence_at(Instant::now()).expect("leading");
    store.revoke_lease(fence.lease).await.expect("revoked");
    // The other instance takes the key at once (else the same instance would campaign again
    // and lead on).
    failover::leader::campaign(
        store.as_ref(),
        crate::leadership::LEADER_KEY,
        "operator-dc-b",
        Duration::from_secs(30),
    )
    .await
    .expect("the store answers")
    .expect("the other instance leads");
    tokio::time::timeout(Duration::from_secs(5), async {
        while gate.leads() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the leadership task notices the revoked lease");
}

/// A context on a mocked client, `now` fixed, reading snapshots from `board`, with metrics
/// (and the failover store, when given).
fn context(
    board: &SnapshotBoard,
    store: Option<Arc<dyn Store>>,
) -> (
    Context,
    tower_test::mock::Handle<Request<Body>, Response<Body>>,
    telemetry::Metrics,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let registry = telemetry::Metrics::new("operator");
    let mut ctx = Context::new(client, Arc::new(board.clone()))
        .with_clock(Arc::new(|| t("2026-11-29T11:00:07Z")))
        .with_metrics(telemetry::OperatorMetrics::register(&registry));
    if let Some(store) = store {
        ctx = ctx.with_store(store);
    }
    (ctx, handle, registry)
}

/// Runs one reconcile of `cluster` against the mock; returns its result and every request.
async fn reconcile_once(
    cluster: &PbxCluster,
    board: &SnapshotBoard,
    behaviour: Behaviour,
) -> (Result<Action, Error>, Vec<Recorded>, telemetry::Metrics) {
    let (mut ctx, handle, registry) = context(board, behaviour.store.clone());
    if let Some(gate) = &behaviour.gate {
        ctx = ctx.with_gate(gate.clone());
    }
    let server = tokio::spawn(serve(handle, cluster.clone(), behaviour));
    let ctx = Arc::new(ctx);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(cluster.clone()), Arc::clone(&ctx)),
    )
    .await
    .expect("the reconcile finishes");
    drop(ctx); // the client goes, the mock's handle ends
    let recorded = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the mock stops when the client is gone")
        .expect("the mock did not panic");
    (result, recorded, registry)
}

fn finalized(mut cluster: PbxCluster) -> PbxCluster {
    cluster.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    cluster
}

/// The requests every apply of the example makes, in order: (path, kind, name).
fn expected_applies() -> Vec<(String, String, String)> {
    let mut expected = vec![(
        "/api/v1/namespaces/calanque/configmaps/city-settings".to_owned(),
        "ConfigMap".to_owned(),
        "city-settings".to_owned(),
    )];
    for dc in ["dc-a", "dc-b"] {
        for component in ["edge", "call-control", "media", "directory"] {
            let name = format!("city-{dc}-{component}");
            expected.push((
                format!("/apis/apps/v1/namespaces/calanque/deployments/{name}"),
                "Deployment".to_owned(),
                name.clone(),
            ));
            expected.push((
                format!("/api/v1/namespaces/calanque/services/{name}"),
                "Service".to_owned(),
                name.clone(),
            ));
            if component == "edge" {
                expected.push((
                    format!("/api/v1/namespaces/calanque/services/city-{dc}-edge-sip"),
                    "Service".to_owned(),
                    format!("city-{dc}-edge-sip"),
                ));
            }
            expected.push((
                format!("/apis/policy/v1/namespaces/calanque/poddisruptionbudgets/{name}"),
                "PodDisruptionBudget".to_owned(),
                name,
            ));
        }
    }
    expected
}

/// Checks that `applies` are exactly the example's objects, each a forced server-side apply by
/// `calanque-operator` of the object its path names.
fn assert_applies(applies: &[Recorded]) {
    let seen: Vec<(String, String, String)> = applies
        .iter()
        .map(|r| {
            assert!(
                r.is_apply(),
                "{} {} is not an apply ({})",
                r.method,
                r.path,
                r.content_type
            );
            assert_eq!(
                r.query.get("fieldManager").map(String::as_str),
                Some("calanque-operator"),
                "{}",
                r.path
            );
            assert_eq!(
                r.query.get("force").map(String::as_str),
                Some("true"),
                "{}",
                r.path
            );
            let (kind, name) = r.object();
            assert_eq!(r.body["metadata"]["namespace"], "calanque", "{}", r.path);
            assert_eq!(
                r.body["metadata"]["ownerReferences"][0]["kind"], "PbxCluster",
                "{}",
                r.path
            );
            (r.path.clone(), kind, name)
        })
        .collect();
    assert_eq!(seen, expected_applies());
}

/// The status a status patch carries.
fn status_of(request: &Recorded) -> PbxClusterStatus {
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.path, format!("{CLUSTER_PATH}/status"));
    assert_eq!(request.content_type, "application/merge-patch+json");
    assert_eq!(
        request.query.get("fieldManager").map(String::as_str),
        Some("calanque-operator")
    );
    serde_json::from_value(request.body["status"].clone()).expect("a PbxClusterStatus")
}

fn condition<'a>(status: &'a PbxClusterStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"));
    (c.status.as_str(), c.reason.as_str())
}

fn bodies(requests: &[Recorded]) -> BTreeMap<(String, String), Value> {
    requests
        .iter()
        .filter(|r| r.is_apply())
        .map(|r| (r.object(), r.body.clone()))
        .collect()
}

/// The names of the objects whose apply bodies differ between two reconciles.
fn changed(before: &[Recorded], after: &[Recorded]) -> Vec<String> {
    let (before, after) = (bodies(before), bodies(after));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    before
        .iter()
        .filter(|(key, body)| after[*key] != **body)
        .map(|((kind, name), _)| format!("{kind} {name}"))
        .collect()
}

#[tokio::test]
async fn a_new_cluster_first_gets_the_finalizer() {
    let (result, requests, _) =
        reconcile_once(&cluster(), &SnapshotBoard::new(), Behaviour::default()).await;
    assert_eq!(result.expect("reconciled"), Action::await_change());
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let patch = &requests[0];
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.path, CLUSTER_PATH);
    assert_eq!(patch.content_type, "application/json-patch+json");
    assert_eq!(
        patch.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["calanque.io/cleanup"]},
        ])
    );
}

#[tokio::test]
async fn a_finalized_cluster_gets_every_object_applied_and_its_status() {
    let (result, requests, _) = reconcile_once(
        &finalized(cluster()),
        &SnapshotBoard::new(),
        Behaviour::default(),
    )
    .await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    let (applies, rest) = requests.split_at(27);
    assert_applies(applies);
    assert_eq!(
        rest.len(),
        1,
        "one status write after the applies: {rest:#?}"
    );
    let status = status_of(&rest[0]);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.active_datacenter.as_deref(), Some("dc-a"));
    assert_eq!(
        condition(&status, "Ready"),
        ("True", "AllDatacentersHealthy")
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("False", "AllDatacentersHealthy")
    );
    assert_eq!(
        condition(&status, "FailoverInProgress"),
        ("False", "Stable")
    );
    let budget = status.error_budget.expect("a budget");
    assert_eq!((budget.allowed_seconds, budget.spent_seconds), (7253, 0));
    assert_eq!(budget.remaining_ratio, "1.0000");

    // The Deployment bodies carry what the builders made (spot check: the edge's command).
    let edge = &applies[1];
    assert_eq!(
        edge.object(),
        ("Deployment".to_owned(), "city-dc-a-edge".to_owned())
    );
    assert_eq!(edge.body["spec"]["replicas"], 2);
    assert_eq!(
        edge.body["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["calanque-sip-edge"])
    );
}

#[tokio::test]
async fn pods_not_ready_degrade_the_status_and_shorten_the_requeue() {
    let behaviour = Behaviour {
        ready: HashMap::from([("city-dc-b-media".to_owned(), 1)]),
        ..Behaviour::default()
    };
    let (result, requests, _) =
        reconcile_once(&finalized(cluster()), &SnapshotBoard::new(), behaviour).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(15))
    );
    let status = status_of(requests.last().unwrap());
    assert_eq!(condition(&status, "Ready"), ("True", "ServingDegraded"));
    assert_eq!(
        condition(&status, "Degraded"),
        ("True", "WorkloadsNotReady")
    );
}

/// Applying every object on every reconcile is safe because an unchanged object is applied
/// with a byte-identical body (a no-op on the API server); an unchanged status is not written.
#[tokio::test]
async fn an_unchanged_cluster_is_applied_identically_and_its_status_left_alone() {
    let board = SnapshotBoard::new();
    let first_cluster = finalized(cluster());
    let (_, first, _) = reconcile_once(&first_cluster, &board, Behaviour::default()).await;
    let mut second_cluster = first_cluster.clone();
    second_cluster.status = Some(status_of(first.last().unwrap()));
    let (result, second, _) = reconcile_once(&second_cluster, &board, Behaviour::default()).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    assert_eq!(
        second.len(),
        27,
        "applies only, no status write: {:#?}",
        &second[27..]
    );
    assert_applies(&second);
    assert_eq!(changed(&first, &second), Vec::<String>::new());
}

#[tokio::test]
async fn a_changed_replica_count_changes_only_those_deployments() {
    let board = SnapshotBoard::new();
    let before = finalized(cluster());
    let (_, first, _) = reconcile_once(&before, &board, Behaviour::default()).await;

    let mut after = before.clone();
    after.status = Some(status_of(first.last().unwrap()));
    after.spec.replicas.edge = 3;
    after.metadata.generation = Some(4);
    let (result, second, _) = reconcile_once(&after, &board, Behaviour::default()).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    let (applies, rest) = second.split_at(27);
    assert_applies(applies);
    // Replicas are per serving datacenter: both datacenters' edges change, nothing else.
    assert_eq!(
        changed(&first, &second),
        ["Deployment city-dc-a-edge", "Deployment city-dc-b-edge"]
    );
    for r in applies
        .iter()
        .filter(|r| r.object().1.ends_with("-edge") && r.object().0 == "Deployment")
    {
        assert_eq!(r.body["spec"]["replicas"], 3, "{}", r.path);
    }
    // The new generation is acknowledged in the status.
    assert_eq!(rest.len(), 1);
    let status = status_of(&rest[0]);
    assert_eq!(status.observed_generation, Some(4));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );
}

#[tokio::test]
async fn a_deleted_cluster_releases_its_sip_services_then_its_finalizer() {
    let mut deleted = finalized(cluster());
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t("2026-11-29T12:00:00Z")),
    );
    let behaviour = Behaviour {
        missing: vec!["city-dc-b-edge-sip".to_owned()], // already gone: not an error
        ..Behaviour::default()
    };
    let (result, requests, _) = reconcile_once(&deleted, &SnapshotBoard::new(), behaviour).await;
    assert_eq!(result.expect("cleaned up"), Action::await_change());
    let summary: Vec<(String, String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.content_type.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "DELETE".to_owned(),
                "/api/v1/namespaces/calanque/services/city-dc-a-edge-sip".to_owned(),
                "application/json".to_owned()
            ),
            (
                "DELETE".to_owned(),
                "/api/v1/namespaces/calanque/services/city-dc-b-edge-sip".to_owned(),
                "application/json".to_owned()
            ),
            (
                "PATCH".to_owned(),
                CLUSTER_PATH.to_owned(),
                "application/json-patch+json".to_owned()
            ),
        ]
    );
    assert_eq!(
        requests[2].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "calanque.io/cleanup"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
}

#[tokio::test]
async fn a_lost_datacenter_shows_in_the_status_and_moves_its_sip_addresses() {
    let board = SnapshotBoard::new();
    board.publish("calanque", "city", healthy_snapshot());
    let healthy = finalized(cluster());
    let (_, before, _) = reconcile_once(&healthy, &board, Behaviour::default()).await;

    board.publish("calanque", "city", dc_a_lost_snapshot());
    let mut lost = healthy.clone();
    lost.status = Some(status_of(before.last().unwrap()));
    let behaviour = Behaviour {
        ready: ["edge", "call-control", "media", "directory"]
            .iter()
            .map(|c| (format!("city-dc-a-{c}"), 0))
            .collect(),
        ..Behaviour::default()
    };
    let (result, after, metrics) = reconcile_once(&lost, &board, behaviour).await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(15))
    );
    let (applies, rest) = after.split_at(27);
    assert_applies(applies);
    assert_eq!(
        changed(&before, &after),
        [
            "ConfigMap city-settings",
            "Service city-dc-a-edge-sip",
            "Service city-dc-b-edge-sip"
        ],
        "no pod template changes on a failover"
    );
    let sip = |dc: &str| {
        applies
            .iter()
            .find(|r| r.object().1 == format!("city-{dc}-edge-sip"))
            .unwrap()
            .body["spec"]
            .clone()
    };
    assert_eq!(sip("dc-a").get("externalIPs"), None);
    assert_eq!(sip("dc-a").get("externalTrafficPolicy"), None);
    assert_eq!(
        sip("dc-b")["externalIPs"],
        json!(["198.51.100.10", "192.0.2.10"])
    );
    assert_eq!(applies[0].body["data"]["active-datacenter"], "dc-b");

    assert_eq!(rest.len(), 1);
    let status = status_of(&rest[0]);
    assert_eq!(status.active_datacenter.as_deref(), Some("dc-b"));
    assert_eq!(
        condition(&status, "FailoverInProgress"),
        ("True", "FailingOver")
    );
    assert_eq!(condition(&status, "Degraded"), ("True", "DatacenterLost"));
    assert_eq!(condition(&status, "Ready"), ("False", "FailoverInProgress"));
    assert_eq!(status.failovers.len(), 1);
    assert_eq!(status.failovers[0].completed_at, None);
    assert_eq!(status.outages.len(), 1);
    assert_eq!(status.error_budget.unwrap().spent_seconds, 7);
    let exposition = metrics.encode();
    assert!(
        exposition.contains("calanque_datacenter_healthy{datacenter=\"dc-a\"} 0"),
        "{exposition}"
    );
    assert!(
        exposition.contains("calanque_datacenter_healthy{datacenter=\"dc-b\"} 1"),
        "{exposition}"
    );
    assert!(
        exposition.contains("calanque_failover_in_progress 1"),
        "{exposition}"
    );
}

#[tokio::test]
async fn without_a_snapshot_the_recorded_failover_state_is_kept() {
    // The failover controller is not wired: what the status recorded last is carried over.
    let board = SnapshotBoard::new();
    board.publish("calanque", "city", dc_a_lost_snapshot());
    let mut recorded = finalized(cluster());
    let (_, first, _) = reconcile_once(&recorded, &board, Behaviour::default()).await;
    recorded.status = Some(status_of(first.last().unwrap()));
    let (_, second, _) =
        reconcile_once(&recorded, &SnapshotBoard::new(), Behaviour::default()).await;
    assert_eq!(changed(&first, &second), Vec::<String>::new());
    assert_eq!(
        second.len(),
        27,
        "the recorded status stands: nothing to write"
    );
}

#[tokio::test]
async fn an_invalid_cluster_says_why_and_applies_nothing() {
    let mut invalid = finalized(cluster());
    invalid.spec.rtp.port_first = 16385;
    let (result, requests, _) =
        reconcile_once(&invalid, &SnapshotBoard::new(), Behaviour::default()).await;
    assert_eq!(result.expect("handled"), Action::await_change());
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let status = status_of(&requests[0]);
    assert_eq!(condition(&status, "Ready"), ("False", "InvalidSpec"));
    assert!(
        status.conditions[0]
            .message
            .contains("rtp.portFirst (16385) must be even")
    );
}

#[tokio::test]
async fn a_failed_apply_fails_the_reconcile_and_backs_off() {
    let behaviour = Behaviour {
        failing: vec!["city-dc-a-media".to_owned()],
        ..Behaviour::default()
    };
    let cluster = Arc::new(finalized(cluster()));
    let (result, requests, _) = reconcile_once(&cluster, &SnapshotBoard::new(), behaviour).await;
    let error = result.expect_err("the apply failed");
    assert_eq!(error.kind(), "apply");
    assert!(
        error
            .to_string()
            .contains("applying Deployment city-dc-a-media"),
        "{error}"
    );
    // It stopped at the failure: the settings and dc-a's edge and call-control objects, then
    // the media Deployment; no status write.
    assert_eq!(requests.len(), 9);
    assert_eq!(requests[8].object().1, "city-dc-a-media");

    let (ctx, _handle, _) = context(&SnapshotBoard::new(), None);
    let ctx = Arc::new(ctx);
    let delays: Vec<Action> = (0..3)
        .map(|_| error_policy(Arc::clone(&cluster), &error, Arc::clone(&ctx)))
        .collect();
    assert_eq!(
        delays,
        [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s)))
    );
}

#[test]
fn backoff_doubles_up_to_five_minutes() {
    let cases = [
        (0, 5),
        (1, 5),
        (2, 10),
        (3, 20),
        (4, 40),
        (5, 80),
        (6, 160),
        (7, 300),
        (8, 300),
        (u32::MAX, 300),
    ];
    for (failures, seconds) in cases {
        assert_eq!(
            backoff(failures),
            Duration::from_secs(seconds),
            "{failures}"
        );
    }
}

/// An embedded store in a temporary directory (kept alive by the returned guard).
async fn failover_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store::embedded::EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .expect("the embedded store opens");
    (dir, Arc::new(store))
}

fn asking_failback(to: &str) -> PbxCluster {
    let mut cluster = finalized(cluster());
    cluster.metadata.annotations = Some(BTreeMap::from([
        (FAILBACK_ANNOTATION.to_owned(), to.to_owned()),
        ("example.com/keep".to_owned(), "yes".to_owned()),
    ]));
    cluster
}

/// The annotation's removal: a merge patch of the PbxCluster's metadata by the operator, on
/// the resourceVersion it read.
fn assert_annotation_removal(request: &Recorded) {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PATCH", CLUSTER_PATH)
    );
    assert_eq!(request.content_type, "application/merge-patch+json");
    assert_eq!(
        request.query.get("fieldManager").map(String::as_str),
        Some("calanque-operator")
    );
    assert_eq!(
        request.body,
        json!({"metadata": {
            "annotations": {"calanque.io/failback": null},
            "resourceVersion": "100",
        }})
    );
}

#[tokio::test]
async fn a_failback_annotation_is_written_for_the_failover_controller_then_removed() {
    let (_dir, store) = failover_store().await;
    let behaviour = Behaviour {
        store: Some(store.clone()),
        ..Behaviour::default()
    };
    let (result, requests, _) = reconcile_once(
        &asking_failback(" dc-a\n"),
        &SnapshotBoard::new(),
        behaviour,
    )
    .await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    let stored = store.get(FAILBACK_KEY).await.unwrap().expect("a request");
    assert_eq!(stored.value.as_ref(), b"dc-a", "the datacenter, trimmed");
    // First the request is written, then the annotation removed (and only it), then the
    // usual reconcile.
    assert_annotation_removal(&requests[0]);
    assert_eq!(requests[0].failback_key.as_deref(), Some("dc-a"));
    assert_applies(&requests[1..28]);
    assert_eq!(requests.len(), 29, "{:#?}", &requests[28..]);
    status_of(&requests[28]);
}

#[tokio::test]
async fn an_empty_failback_annotation_is_removed_without_a_request() {
    let (_dir, store) = failover_store().await;
    let behaviour = Behaviour {
        store: Some(store.clone()),
        ..Behaviour::default()
    };
    let (result, requests, _) =
        reconcile_once(&asking_failback("  "), &SnapshotBoard::new(), behaviour).await;
    result.expect("reconciled");
    assert_annotation_removal(&requests[0]);
    assert_eq!(store.get(FAILBACK_KEY).await.unwrap(), None);
}

#[tokio::test]
async fn without_a_failover_store_the_failback_annotation_stays() {
    let (result, requests, _) = reconcile_once(
        &asking_failback("dc-a"),
        &SnapshotBoard::new(),
        Behaviour::default(),
    )
    .await;
    result.expect("reconciled");
    assert_applies(&requests[..27]);
    assert_eq!(requests.len(), 28, "the applies and the status only");
    status_of(&requests[27]);
}

#[tokio::test]
async fn a_failback_annotation_changed_meanwhile_is_not_removed() {
    let (_dir, store) = failover_store().await;
    let behaviour = Behaviour {
        store: Some(store.clone()),
        changed_meanwhile: true,
        ..Behaviour::default()
    };
    let (result, requests, _) =
        reconcile_once(&asking_failback("dc-a"), &SnapshotBoard::new(), behaviour).await;
    let error = result.expect_err("the removal was refused");
    assert_eq!(error.kind(), "annotation");
    // The request went out; the refused removal stopped the reconcile (retried with backoff,
    // on the cluster as it is now).
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_annotation_removal(&requests[0]);
    assert!(store.get(FAILBACK_KEY).await.unwrap().is_some());
}

/// A store that cannot be reached.
#[derive(Debug)]
struct Unreachable;

#[async_trait::async_trait]
impl Store for Unreachable {
    async fn get(&self, _: &str) -> Result<Option<store::KeyValue>, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn list_prefix(
        &self,
        _: &str,
    ) -> Result<(Vec<store::KeyValue>, store::Revision), StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn put(
        &self,
        _: &str,
        _: Bytes,
        _: Option<store::LeaseId>,
    ) -> Result<store::Revision, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn delete(&self, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn txn(
        &self,
        _: Vec<store::Compare>,
        _: Vec<store::Op>,
    ) -> Result<store::TxnOutcome, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn grant_lease(&self, _: Duration) -> Result<store::LeaseId, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn keep_alive(&self, _: store::LeaseId) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn revoke_lease(&self, _: store::LeaseId) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
    async fn watch(&self, _: &str, _: store::Revision) -> Result<store::Watch, StoreError> {
        Err(StoreError::Unavailable("unreachable".into()))
    }
}

#[tokio::test]
async fn a_failback_request_that_cannot_be_written_keeps_the_annotation() {
    let (ctx, handle, _) = context(&SnapshotBoard::new(), Some(Arc::new(Unreachable)));
    let cluster = asking_failback("dc-a");
    let server = tokio::spawn(serve(handle, cluster.clone(), Behaviour::default()));
    let ctx = Arc::new(ctx);
    let result = reconcile(Arc::new(cluster), Arc::clone(&ctx)).await;
    drop(ctx);
    let requests = server.await.expect("the mock did not panic");
    let error = result.expect_err("the store is unreachable");
    assert_eq!(error.kind(), "failback");
    assert!(
        error.to_string().contains("failback request to dc-a"),
        "{error}"
    );
    assert!(requests.is_empty(), "nothing sent: {requests:#?}");
}

#[tokio::test]
async fn a_snapshot_naming_a_datacenter_the_cluster_does_not_serve_from_is_ignored() {
    let board = SnapshotBoard::new();
    let mut foreign = dc_a_lost_snapshot();
    foreign.active_datacenter = "paris-1".into();
    board.publish("calanque", "city", foreign);
    let (_, requests, _) =
        reconcile_once(&finalized(cluster()), &board, Behaviour::default()).await;
    let (_, without, _) = reconcile_once(
        &finalized(cluster()),
        &SnapshotBoard::new(),
        Behaviour::default(),
    )
    .await;
    assert_eq!(changed(&without, &requests), Vec::<String>::new());
    let status = status_of(requests.last().unwrap());
    assert_eq!(status.active_datacenter.as_deref(), Some("dc-a"));
    assert!(status.failovers.is_empty() && status.outages.is_empty());
}

/// Leadership tasks for the operator's key on `store`, the TTL given, campaigning every 20 ms.
fn campaigner(store: &Arc<dyn Store>, instance: &str, ttl: Duration) -> Leadership {
    Leadership::spawn(
        store.clone(),
        LeadershipConfig {
            key: crate::leadership::LEADER_KEY,
            instance: instance.to_owned(),
            ttl,
            campaign_every: Duration::from_millis(20),
        },
    )
}

/// Waits until one of `instances` leads; returns (leader, the others).
async fn elected(instances: Vec<Leadership>) -> (Leadership, Vec<Leadership>) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !instances.iter().any(|l| l.current().is_some()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a leader is elected");
    let (mut leaders, others): (Vec<_>, Vec<_>) =
        instances.into_iter().partition(|l| l.current().is_some());
    assert_eq!(leaders.len(), 1, "exactly one leader");
    (leaders.remove(0), others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sends_nothing_while_the_leader_reconciles() {
    let (_dir, store) = failover_store().await;
    let (leader, followers) = elected(vec![
        campaigner(&store, "operator-dc-a", Duration::from_secs(5)),
        campaigner(&store, "operator-dc-b", Duration::from_secs(5)),
    ])
    .await;
    let follower = &followers[0];
    let as_instance = |l: &Leadership| Behaviour {
        store: Some(store.clone()),
        gate: Some(WriteGate::Elected(l.handle())),
        ..Behaviour::default()
    };
    // A new cluster (the finalizer), a live one, one asking for a failback, a deleted one:
    // the follower sends nothing and writes nothing to the store.
    let mut deleted = finalized(cluster());
    deleted.metadata.deletion_timestamp = Some(Time(t("2026-11-29T11:00:00Z")));
    for cluster in [
        cluster(),
        finalized(cluster()),
        asking_failback("dc-a"),
        deleted,
    ] {
        let (result, requests, _) =
            reconcile_once(&cluster, &SnapshotBoard::new(), as_instance(follower)).await;
        assert_eq!(result.expect("nothing to fail"), Action::await_change());
        assert!(requests.is_empty(), "a follower wrote: {requests:#?}");
    }
    assert_eq!(store.get(FAILBACK_KEY).await.unwrap(), None);
    // The leader does the work, its failback request fenced by its leadership.
    let (result, requests, _) = reconcile_once(
        &asking_failback("dc-a"),
        &SnapshotBoard::new(),
        as_instance(&leader),
    )
    .await;
    result.expect("reconciled");
    assert_annotation_removal(&requests[0]);
    assert_eq!(requests[0].failback_key.as_deref(), Some("dc-a"));
    assert_applies(&requests[1..28]);
    status_of(&requests[28]);
    leader.stop().await;
    for follower in followers {
        follower.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_deposed_mid_reconcile_stops_writing() {
    let (_dir, store) = failover_store().await;
    let (leader, _) = elected(vec![campaigner(
        &store,
        "operator-dc-a",
        Duration::from_secs(1),
    )])
    .await;
    let behaviour = Behaviour {
        store: Some(store.clone()),
        gate: Some(WriteGate::Elected(leader.handle())),
        revoke_after: Some(5),
        ..Behaviour::default()
    };
    let cluster = finalized(cluster());
    let (result, requests, _) =
        reconcile_once(&cluster, &SnapshotBoard::new(), behaviour.clone()).await;
    let error = result.expect_err("stopped");
    assert_eq!(error.kind(), "not_leader");
    assert_eq!(
        requests.len(),
        5,
        "no write after the lease went: {requests:#?}"
    );
    assert!(requests.iter().all(Recorded::is_apply));
    // Not a failure to back off from: the new leader reconciles.
    let (ctx, _, _) = context(&SnapshotBoard::new(), None);
    assert_eq!(
        error_policy(Arc::new(cluster), &error, Arc::new(ctx)),
        Action::await_change()
    );
    leader.stop().await;
}

/// A leader whose lease was revoked before its task noticed still believes it leads: the
/// failback request is refused by the fence in etcd, nothing is sent to the API server, and
/// the leadership task is told at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_failback_request_is_fenced_out() {
    let (_dir, store) = failover_store().await;
    // A long TTL: the task renews every 10 s, so only the refused write can tell it.
    let (leader, _) = elected(vec![campaigner(
        &store,
        "operator-dc-a",
        Duration::from_secs(30),
    )])
    .await;
    let gate = WriteGate::Elected(leader.handle());
    let fence = leader.current().expect("leading").fence;
    store.revoke_lease(fence.lease).await.expect("revoked");
    assert!(gate.leads(), "it does not know yet");
    let behaviour = Behaviour {
        store: Some(store.clone()),
        gate: Some(gate.clone()),
        ..Behaviour::default()
    };
    let (result, requests, _) =
        reconcile_once(&asking_failback("dc-a"), &SnapshotBoard::new(), behaviour).await;
    assert_eq!(result.expect_err("fenced out").kind(), "not_leader");
    assert!(requests.is_empty(), "{requests:#?}");
    assert_eq!(store.get(FAILBACK_KEY).await.unwrap(), None);
    // The task drops the fence at once (it may campaign again and lead under a new one: the
    // key is free).
    tokio::time::timeout(Duration::from_secs(1), async {
        while gate.check(Instant::now()) == Ok(Some(fence)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the leadership task drops the deposed fence at once");
    leader.stop().await;
}
