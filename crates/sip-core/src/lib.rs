//! calanque's sans-IO SIP core: the RFC 3261 §17 transaction layer (with RFC 6026), the
//! dialog layer (§12, forking), digest authentication (RFC 7616 / RFC 8760) and the registrar's
//! binding logic (§10.3).
//!
//! Nothing here reads a clock, spawns, locks or does I/O. Callers feed input with the
//! current time and drain output (datagrams to send, events, the next time to wake up):
//!
//! ```text
//! handle_input(now, input) ──▶ state machines ──▶ poll_output() → Transmit | Event | Timeout
//! ```
//!
//! The edge runs the transaction layer on its sockets; call-control runs the dialog layer in
//! another process; both are tested on a virtual clock without sockets (ADR 0001).

pub mod dialog;
pub mod digest;
pub mod ids;
pub mod registrar;
pub mod screening;
pub mod timers;
pub mod transaction;
pub mod transmit;

pub use ids::IdGenerator;
pub use timers::TimerConfig;
pub use transmit::Transmit;
