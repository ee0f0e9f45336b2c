//! The objects a `PbxCluster` wants, as pure functions of the resource and of the failover
//! [`Placement`] (no I/O): for each serving datacenter, a Deployment, a Service and a
//! PodDisruptionBudget per component (edge, call-control, media, directory) and the edge's SIP
//! Service; for the cluster, one ConfigMap of shared settings. Every object carries the
//! cluster's labels and a controller owner reference to the `PbxCluster` (ADR 0017).
//!
//! Names: `<cluster>-<dc>-<component>` (the edge's SIP Service `<cluster>-<dc>-edge-sip`), the
//! ConfigMap `<cluster>-settings`. The witness datacenter gets nothing: it runs only etcd and
//! NATS members, which the operator does not manage.

mod network;
mod settings;
mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource as _, ResourceExt as _};

use crate::failover_view::FailoverSnapshot;
use crate::resource::{Datacenter, PbxCluster, PbxClusterSpec, serving_datacenters};

pub use network::edge_sip_service_name;
pub use settings::settings_name;
pub use workloads::{
    DIRECTORY_GRPC_PORT, DIRECTORY_REST_PORT, ETCD_TLS_DIR, NATS_TLS_DIR, RUN_AS, SIP_TLS_DIR,
    directory_token_secret, nonce_key_secret,
};

/// The port of every service's `/metrics`, `/healthz` and `/readyz`.
pub const TELEMETRY_PORT: u16 = 9090;
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "calanque-operator";

/// `app.kubernetes.io/name`, the same on every object.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the cluster's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: the service.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `calanque.io/datacenter`: the datacenter.
pub const LABEL_DATACENTER: &str = "calanque.io/datacenter";

/// A calanque service the operator runs in each serving datacenter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The SIP edge.
    Edge,
    /// Call-control (the B2BUA).
    CallControl,
    /// The RTP relay.
    Media,
    /// The directory.
    Directory,
}

impl Component {
    /// Every component, in the order objects are built and applied.
    pub const ALL: [Component; 4] = [
        Component::Edge,
        Component::CallControl,
        Component::Media,
        Component::Directory,
    ];

    /// The `app.kubernetes.io/component` value and object-name suffix (also the `service`
    /// label of the service's own metrics).
    pub fn name(self) -> &'static str {
        match self {
            Component::Edge => "edge",
            Component::CallControl => "call-control",
            Component::Media => "media",
            Component::Directory => "directory",
        }
    }

    /// The binary in the image.
    pub fn binary(self) -> &'static str {
        match self {
            Component::Edge => "calanque-sip-edge",
            Component::CallControl => "calanque-call-control",
            Component::Media => "calanque-media",
            Component::Directory => "calanque-directory",
        }
    }

    /// The component whose `app.kubernetes.io/component` value is `name`.
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The spec's replica count for this component.
    pub fn replicas(self, spec: &PbxClusterSpec) -> i32 {
        match self {
            Component::Edge => spec.replicas.edge,
            Component::CallControl => spec.replicas.call_control,
            Component::Media => spec.replicas.media,
            Component::Directory => spec.replicas.directory,
        }
    }
}

/// `<cluster>-<dc>-<component>`: the Deployment, its Service and its PodDisruptionBudget.
pub fn object_name(cluster: &str, datacenter: &str, component: Component) -> String {
    format!("{cluster}-{datacenter}-{}", component.name())
}

/// Where the failover state puts things: the active datacenter, and which serving datacenter
/// answers each one's SIP addresses (a lost datacenter's move to the other one's edges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The datacenter holding the singleton roles.
    pub active_datacenter: String,
    /// For each serving datacenter, the SIP addresses its edge Service answers.
    pub sip_addresses: BTreeMap<String, Vec<String>>,
}

impl Placement {
    /// The placement `snapshot` implies. A serving datacenter reported unhealthy while the
    /// other is not is lost: its SIP addresses go to the other one's edge Service, so phones
    /// using them reach a serving edge without waiting for their own failover to the secondary
    /// proxy. With both unhealthy, or health unknown, every address stays home.
    pub fn new(spec: &PbxClusterSpec, snapshot: &FailoverSnapshot) -> Placement {
        let serving: Vec<&Datacenter> = serving_datacenters(spec).collect();
        let lost = |dc: &Datacenter| {
            snapshot.is_unhealthy(&dc.name)
                && serving
                    .iter()
                    .any(|other| other.name != dc.name && !snapshot.is_unhealthy(&other.name))
        };
        let mut sip_addresses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Each datacenter's own addresses first, then those it takes over.
        for dc in &serving {
            let own = sip_addresses.entry(dc.name.clone()).or_default();
            if !lost(dc) {
                own.extend(dc.sip_addresses.iter().cloned());
            }
        }
        for dc in serving.iter().filter(|dc| lost(dc)) {
            let answerer = serving
                .iter()
                .find(|other| other.name != dc.name && !lost(other))
                .unwrap_or(dc);
            sip_addresses
                .entry(answerer.name.clone())
                .or_default()
                .extend(dc.sip_addresses.iter().cloned());
        }
        Placement {
            active_datacenter: snapshot.active_datacenter.clone(),
            sip_addresses,
        }
    }

    /// The addresses `datacenter`'s edge Service answers (its own unless lost, plus those of a
    /// lost peer).
    pub fn addresses_of(&self, datacenter: &str) -> &[String] {
        self.sip_addresses
            .get(datacenter)
            .map_or(&[][..], Vec::as_slice)
    }
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredObject {
    /// The shared settings.
    ConfigMap(ConfigMap),
    /// A component's pods in one datacenter.
    Deployment(Box<Deployment>),
    /// A component's metrics (and API) Service, or the edge's SIP Service.
    Service(Box<Service>),
    /// A component's disruption budget in one datacenter.
    PodDisruptionBudget(PodDisruptionBudget),
}

impl DesiredObject {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            DesiredObject::ConfigMap(_) => "ConfigMap",
            DesiredObject::Deployment(_) => "Deployment",
            DesiredObject::Service(_) => "Service",
            DesiredObject::PodDisruptionBudget(_) => "PodDisruptionBudget",
        }
    }

    /// The object's name.
    pub fn name(&self) -> String {
        match self {
            DesiredObject::ConfigMap(o) => o.name_any(),
            DesiredObject::Deployment(o) => o.name_any(),
            DesiredObject::Service(o) => o.name_any(),
            DesiredObject::PodDisruptionBudget(o) => o.name_any(),
        }
    }

    /// The object as the JSON body of its apply.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            DesiredObject::ConfigMap(o) => serde_json::to_value(o),
            DesiredObject::Deployment(o) => serde_json::to_value(o),
            DesiredObject::Service(o) => serde_json::to_value(o),
            DesiredObject::PodDisruptionBudget(o) => serde_json::to_value(o),
        };
        value.unwrap_or(serde_json::Value::Null)
    }
}

/// Why the objects could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    /// The resource has no name, namespace or uid (it was not read from the API server).
    #[error("the PbxCluster has no {0} (objects need an owner reference and a namespace)")]
    Metadata(&'static str),
}

/// What every object of `cluster` shares: the names, the namespace, the owner reference.
#[derive(Debug, Clone)]
struct Owner<'a> {
    cluster: &'a str,
    namespace: &'a str,
    reference: OwnerReference,
}

impl Owner<'_> {
    /// Labels of the cluster's objects in `datacenter` for `component` (either may be absent
    /// for cluster-wide objects).
    fn labels(
        &self,
        datacenter: Option<&str>,
        component: Option<Component>,
    ) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_owned(), "calanque".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.cluster.to_owned()),
            (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
        ]);
        if let Some(component) = component {
            labels.insert(LABEL_COMPONENT.to_owned(), component.name().to_owned());
        }
        if let Some(datacenter) = datacenter {
            labels.insert(LABEL_DATACENTER.to_owned(), datacenter.to_owned());
        }
        labels
    }

    /// The pod selector of `component` in `datacenter` (immutable on Deployments: never add a
    /// key here).
    fn selector(&self, datacenter: &str, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "calanque".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.cluster.to_owned()),
            (LABEL_COMPONENT.to_owned(), component.name().to_owned()),
            (LABEL_DATACENTER.to_owned(), datacenter.to_owned()),
        ])
    }

    fn metadata(
        &self,
        name: String,
        datacenter: Option<&str>,
        component: Option<Component>,
    ) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels(datacenter, component)),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// Every object `cluster` wants, in apply order: the settings, then per serving datacenter
/// (spec order) and component: Deployment, Service, PodDisruptionBudget (the edge's SIP Service
/// after its metrics Service). `cluster` must have passed [`crate::validate`].
pub fn desired_objects(
    cluster: &PbxCluster,
    placement: &Placement,
) -> Result<Vec<DesiredObject>, DesiredError> {
    let name = cluster
        .metadata
        .name
        .as_deref()
        .ok_or(DesiredError::Metadata("name"))?;
    let namespace = cluster
        .metadata
        .namespace
        .as_deref()
        .ok_or(DesiredError::Metadata("namespace"))?;
    let reference = cluster
        .controller_owner_ref(&())
        .ok_or(DesiredError::Metadata("uid"))?;
    let owner = Owner {
        cluster: name,
        namespace,
        reference,
    };
    let spec = &cluster.spec;
    let mut objects = vec![DesiredObject::ConfigMap(settings::config_map(
        &owner, spec, placement,
    ))];
    for dc in serving_datacenters(spec) {
        for component in Component::ALL {
            objects.push(DesiredObject::Deployment(Box::new(workloads::deployment(
                &owner, spec, dc, component,
            ))));
            objects.push(DesiredObject::Service(Box::new(
                network::component_service(&owner, dc, component),
            )));
            if component == Component::Edge {
                objects.push(DesiredObject::Service(Box::new(network::edge_sip_service(
                    &owner, spec, dc, placement,
                ))));
            }
            objects.push(DesiredObject::PodDisruptionBudget(
                workloads::disruption_budget(&owner, dc, component),
            ));
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests;
