//! Call control: decides where each call goes and drives it.
//!
//! - [`dialplan`]: the sans-IO dial plan — from the calling device and the dialled string to a
//!   [`dialplan::Target`] (extension, hunt group, pickup, trunk, emergency) or a
//!   [`dialplan::Refusal`] with its SIP status. No I/O, no clock: it reads the directory through
//!   the [`dialplan::DirectoryView`] trait.
//! - [`b2bua`]: the sans-IO back-to-back user agent — the caller's leg answered through its
//!   edge, callee legs sent through the callees' edges (ADR 0011), forking, CANCEL, busy, ring
//!   timeout, BYE either way, a record per call.
//! - [`failover`] and [`liveness`]: sans-IO — which datacenters the failover marked failed,
//!   which media relays stopped beating, and what moving each stored call takes (ADR 0020).

mod anchor;
pub mod b2bua;
pub mod dialplan;
pub mod failover;
pub mod liveness;
mod records;
pub mod service;
mod writers;
