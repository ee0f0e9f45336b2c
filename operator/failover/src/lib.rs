//! Failover between the two datacenters (issue 7, ADR 0018): decides from health what to do,
//! and does it under an etcd lease with every write fenced by the leader key's revision.
//!
//! - [`planner`]: sans-IO — observations, leadership, the stored state and the witness in, a
//!   [`planner::Decision`] out; time is an input.
//! - [`state`]: the stored state (`calanque/v1/failover/state`, a `calanque.v1.FailoverState`)
//!   and its pure transitions.
//! - [`leader`]: leadership on the store (lease, campaign, keep-alive) and [`leader::fenced_txn`].
//! - [`probe`]: the I/O feeding the planner (SIP OPTIONS, `/readyz`, the witness).
//! - [`controller`]: the loop tying them together, announcing the state on the bus.
//! - [`view`]: each controller's own judgments, stored for the leader's second opinion.
//! - [`watch`]: reading the stored state from outside ([`watch_state`]: list, then follow).

pub mod controller;
pub mod leader;
pub mod planner;
pub mod probe;
pub mod state;
pub mod view;
pub mod watch;

pub use controller::{Controller, ControllerConfig};
pub use planner::{Action, Decision, Planner, PlannerConfig};
pub use state::FailoverState;
pub use watch::watch_state;
