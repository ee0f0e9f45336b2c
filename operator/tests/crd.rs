//! The checked-in CRD is the one the types generate, and the contract's example is a valid
//! `PbxCluster`.

use std::path::PathBuf;

use operator::crdgen::{CHECKED_IN_PATH, REFRESH_COMMAND, crd_yaml};
use operator::{PbxCluster, validate};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ is in the repository")
        .to_owned()
}

#[test]
fn the_checked_in_crd_is_generated_from_the_types() {
    let generated = crd_yaml().expect("the CRD serialises");
    let path = repository().join(CHECKED_IN_PATH);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} differs from the CRD the types generate; refresh it with\n  {REFRESH_COMMAND}",
        path.display()
    );
}

#[test]
fn the_crd_names_what_the_contract_says() {
    let crd: serde_json::Value = serde_norway::from_str(&crd_yaml().unwrap()).unwrap();
    assert_eq!(crd["metadata"]["name"], "pbxclusters.calanque.io");
    assert_eq!(crd["spec"]["group"], "calanque.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "PbxCluster");
    assert_eq!(crd["spec"]["names"]["plural"], "pbxclusters");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "pbx");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let datacenters = &spec["datacenters"];
    assert_eq!(datacenters["x-kubernetes-list-type"], "map", "names unique");
    assert_eq!(datacenters["x-kubernetes-list-map-keys"][0], "name");
    assert_eq!(datacenters["maxItems"], 3);
    assert!(datacenters["items"]["properties"]["name"]["pattern"].is_string());
    let rules = datacenters["x-kubernetes-validations"].to_string();
    assert!(rules.contains("role == 'serving').size() == 2"), "{rules}");
    assert!(rules.contains("role == 'witness').size() <= 1"), "{rules}");
    for replicas in ["edge", "callControl", "media", "directory"] {
        assert_eq!(
            spec["replicas"]["properties"][replicas]["minimum"], 0.0,
            "{replicas}"
        );
    }
    for port in ["udpPort", "tcpPort", "tlsPort"] {
        assert_eq!(spec["sip"]["properties"][port]["minimum"], 1.0, "{port}");
        assert_eq!(
            spec["sip"]["properties"][port]["maximum"], 65535.0,
            "{port}"
        );
    }
    let rtp_rules = spec["rtp"]["x-kubernetes-validations"].to_string();
    assert!(
        rtp_rules.contains("self.portFirst < self.portLast"),
        "{rtp_rules}"
    );
    assert!(rtp_rules.contains("self.portFirst % 2 == 0"), "{rtp_rules}");
    assert!(spec["slo"]["properties"]["objective"]["pattern"].is_string());
}

/// The first YAML block of docs/pbxcluster.md, the contract, parses into the types and passes
/// validation. Its status conditions are abbreviated (no `lastTransitionTime`, some without
/// `message`, both required by `metav1.Condition`), so they are left out; every other status
/// field must parse.
#[test]
fn the_contract_example_is_a_valid_pbx_cluster() {
    let contract = std::fs::read_to_string(repository().join("docs/pbxcluster.md"))
        .expect("docs/pbxcluster.md");
    let yaml = contract
        .split("```yaml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block");
    let mut example: serde_json::Value = serde_norway::from_str(yaml).expect("YAML");
    let conditions = example["status"]
        .as_object_mut()
        .and_then(|status| status.remove("conditions"))
        .expect("the example shows conditions");
    let types: Vec<&str> = conditions
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "Degraded", "FailoverInProgress"]);
    let cluster: PbxCluster = serde_json::from_value(example).expect("the example parses");
    assert_eq!(cluster.metadata.name.as_deref(), Some("city"));
    assert_eq!(cluster.spec.datacenters.len(), 3);
    let status = cluster.status.as_ref().expect("the example has a status");
    assert_eq!(status.active_datacenter.as_deref(), Some("dc-a"));
    assert_eq!(status.failovers.len(), 1);
    assert_eq!(status.outages.len(), 1);
    assert_eq!(status.error_budget.as_ref().unwrap().allowed_seconds, 7253);
    assert_eq!(validate(&cluster), Ok(()));
}
