//! Call control: decides where each call goes and drives it (the B2BUA, later).
//!
//! - [`dialplan`]: the sans-IO dial plan — from the calling device and the dialled string to a
//!   [`dialplan::Target`] (extension, hunt group, pickup, trunk, emergency) or a
//!   [`dialplan::Refusal`] with its SIP status. No I/O, no clock: it reads the directory through
//!   the [`dialplan::DirectoryView`] trait.

pub mod dialplan;
