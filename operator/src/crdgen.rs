//! The CRD as YAML, generated from the Rust types: `calanque-operator crd` prints it and
//! `charts/calanque/crds/pbxclusters.calanque.io.yaml` holds it (a test keeps the two equal).

use kube::CustomResourceExt;

use crate::resource::PbxCluster;

/// Where the chart keeps the CRD, relative to the repository's root.
pub const CHECKED_IN_PATH: &str = "charts/calanque/crds/pbxclusters.calanque.io.yaml";

/// The command that refreshes the checked-in CRD.
pub const REFRESH_COMMAND: &str = "cargo run -q -p operator --bin calanque-operator -- crd > charts/calanque/crds/pbxclusters.calanque.io.yaml";

/// The `PbxCluster` CRD as a YAML document, with a header saying where it comes from.
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    let body = serde_norway::to_string(&PbxCluster::crd())?;
    Ok(format!(
        "# Generated from operator/src/resource.rs: do not edit. Refresh with\n# {REFRESH_COMMAND}\n{body}"
    ))
}
