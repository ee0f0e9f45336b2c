//! The directory service: the source of truth for sites, users, extensions, devices and their
//! credentials (HA1 only), hunt and pickup groups, classes of service, trunks and routes.
//!
//! - [`model`]: the validated domain types, the [`model::Directory`] aggregate and its checks,
//!   conversions to and from the `calanque.v1` protobuf messages.
//! - [`import`]: bulk import and export (YAML, CSV), planning an import against the directory,
//!   and a generator of a city-sized directory for tests and benchmarks.

pub mod import;
pub mod model;
pub mod storage;
