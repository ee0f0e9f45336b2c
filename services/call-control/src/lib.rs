//! Call control: decides where each call goes and drives it.
//!
//! - [`dialplan`]: the sans-IO dial plan — from the calling device and the dialled string to a
//!   [`dialplan::Target`] (extension, hunt group, pickup, trunk, emergency) or a
//!   [`dialplan::Refusal`] with its SIP status. No I/O, no clock: it reads the directory through
//!   the [`dialplan::DirectoryView`] trait.
//! - [`b2bua`]: the sans-IO back-to-back user agent — the caller's leg answered through its
//!   edge, callee legs sent through the callees' edges (ADR 0011), forking, CANCEL, busy, ring
//!   timeout, BYE either way, a record per call.

mod anchor;
pub mod b2bua;
pub mod dialplan;
mod records;
pub mod service;
mod writers;
