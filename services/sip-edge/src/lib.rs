//! The SIP edge: where every handset meets calanque.
//!
//! It runs the sans-IO transaction layer of `sip-core` on tokio sockets (UDP, TCP, TLS),
//! answers REGISTER as the registrar (digest against the directory cache, bindings in the
//! store under leases), answers OPTIONS itself, hands every other request to call-control over
//! the bus while keeping the transaction, and protects itself from floods and scanners.
//!
//! ```text
//! sockets ─▶ transport ─▶ engine: protection ─▶ TransactionLayer ─▶ registrar │ OPTIONS │ call-control (bus)
//!               ▲                                      │
//!               └──────────────── Transmit ◀───────────┘
//! ```
//!
//! Files: `config`, `clock`, `transport/` (UDP, TCP, TLS listeners and connections),
//! `engine` (the one task that owns the transaction layer), `auth` (digest against the
//! directory), `registrar` (the location update; bindings live in the `location` crate),
//! `protection/` (rate limits, bans, scanners, lockouts), `core_routing` (the bus to
//! call-control), `nat_keepalive` (pings to phones behind NAT), `metrics` (what the edge
//! counts, in the catalogue's terms), `overload` (shedding new registrations when the engine
//! falls behind), `service` (wiring, drain).

pub mod auth;
pub mod clock;
pub mod config;
pub mod core_routing;
mod engine;
mod metrics;
/// The location service lives in its own crate (call-control reads it too); re-exported
/// under its old path.
pub use location;
pub mod nat_keepalive;
pub mod overload;
pub mod protection;
pub mod registrar;
pub mod service;
mod tags;
pub mod transport;

pub use config::EdgeConfig;
pub use service::{EdgeHandle, StartError, start};
