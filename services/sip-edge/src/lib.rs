//! The SIP edge: where every handset meets calanque.
//!
//! It runs the sans-IO transaction layer of `sip-core` on tokio sockets (UDP, TCP, TLS),
//! answers REGISTER as the registrar (digest against the directory cache, bindings in the
//! store under leases), answers OPTIONS itself, hands every other request to call-control over
//! the bus while keeping the transaction, and protects itself from floods and scanners.
//!
//! ```text
//! sockets ──▶ transport ──▶ engine (protection, TransactionLayer, timers) ──▶ registrar / options / core routing
//!                 ▲                         │
//!                 └──────── Transmit ◀──────┘
//! ```
//!
//! Files: `config`, `clock`, `transport/` (UDP, TCP, TLS listeners and connections),
//! `engine` (the one task that owns the transaction layer), `registrar` (authentication and the
//! location update), `location/` (bindings in the store), `protection/` (rate limits, bans,
//! scanners, lockouts), `core_routing` (the bus to call-control), `service` (wiring, drain).

pub mod location;
pub mod protection;
