//! The calanque operator (issue 7): the `PbxCluster` custom resource (`docs/pbxcluster.md`),
//! the objects each serving datacenter runs (pure builders), the status and error budget (pure
//! functions of what was observed and of the failover controller's [`FailoverSnapshot`], fed
//! from its stored state by [`StateFeed`]), and the reconciler that applies them (ADR 0017).

pub mod budget;
pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod desired;
pub mod failover_feed;
pub mod failover_view;
pub mod leadership;
pub mod resource;
pub mod status;

#[cfg(test)]
mod fixtures;

pub use resource::{PbxCluster, PbxClusterSpec, PbxClusterStatus, ValidationError, validate};

pub use failover_feed::{StateFeed, snapshot_from_state};
pub use failover_view::{FailoverSnapshot, FailoverView, SnapshotBoard};
