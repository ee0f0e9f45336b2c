//! Two datacenters and a witness on one machine, for the e2e scenarios (issue 8).
//!
//! [`Harness`] owns everything a run starts: the network namespaces ([`netns::Topology`]), the
//! 3-member etcd and NATS clusters ([`cluster`]), each datacenter's calanque services and
//! failover controller ([`datacenter`]), every process ([`process::NsProcess`]) with its log
//! in the run directory. Dropping it — at the end of a test or while a failed one unwinds —
//! kills every process and deletes every namespace.
//!
//! The test process stays in the host's namespace, which carries no test traffic. It observes
//! the system through `cq-e2e` (this crate's binary) run inside a namespace:
//! [`Harness::probe`] and the typed helpers built on it.
//!
//! [`scenarios`] runs the failure scenarios with a phone fleet and writes the report
//! (`make e2e-ha`; a subset runs in `make test`).
//!
//! The API is synchronous (blocking): from async code, call it from `spawn_blocking` or
//! before/after the runtime's work; the waits poll files and short-lived probes.

// The harness waits and measures on the wall clock: it is the I/O shell around real processes,
// with no sans-IO core in it.
#![allow(clippy::disallowed_methods)]

pub mod binaries;
pub mod cluster;
pub mod datacenter;
pub mod delay;
mod harness;
pub mod netns;
pub mod process;
pub mod scenarios;
pub mod storm;

pub use harness::{Harness, HarnessOptions, TeardownReport};

use serde::{Deserialize, Serialize};

/// What the failover state key says (`calanque/v1/failover/state`), as `cq-e2e
/// failover-state` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverView {
    /// The datacenter holding the roles.
    pub active: String,
    /// +1 at every move.
    pub epoch: u64,
    /// A move started and not yet completed.
    pub moving: bool,
    /// The datacenters marked failed.
    pub failed: Vec<String>,
    /// The controller instance that wrote it, and the leader key revision it held.
    pub writer: String,
    #[serde(default)]
    pub fencing: i64,
    /// The store revision of the write.
    pub revision: i64,
}

/// Logs of the harness (`calanque_e2e=info`, or `RUST_LOG`) to the test's output, once per
/// test binary: what every e2e test starts with.
pub fn init_test_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "calanque_e2e=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Logs of the harness's binaries (`cq-e2e-ha`, `cq-delay`): to stderr, `RUST_LOG` or `info`.
pub fn init_binary_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
