//! One telemetry set-up for every calanque binary (issue 6, `docs/metrics.md`):
//!
//! - [`init`]: structured logs (JSON or human), and OpenTelemetry traces exported over OTLP/HTTP
//!   when an endpoint is configured; the returned [`TelemetryGuard`] flushes spans on drop.
//! - [`Metrics`]: the Prometheus registry of a process, and the metric groups of the catalogue
//!   ([`SipMetrics`], [`CallMetrics`], [`MediaMetrics`], [`BusMetrics`], [`StoreMetrics`],
//!   [`OperatorMetrics`]);
//!   each service registers the groups it feeds, so `/metrics` shows what it really measures.
//! - [`Readiness`] and [`http::app`]: `/metrics`, `/healthz` (live) and `/readyz` (ready).
//! - [`InstrumentedBus`] and [`InstrumentedStore`]: decorators that time and count every bus
//!   and store operation, and carry the W3C trace context in bus message headers
//!   ([`propagation`]) so that one call is one trace across the services.

mod bus;
mod calls;
mod config;
mod health;
pub mod heartbeat;
pub mod http;
mod init;
mod media;
mod operator;
mod registry;
mod service;
mod sip;
mod store;

pub mod propagation;
pub mod sampling;

pub use bus::{BusMetrics, InstrumentedBus};
pub use calls::{CallMetrics, SetupResult};
pub use config::{LogFormat, TelemetryArgs};
pub use health::Readiness;
pub use init::{TelemetryError, TelemetryGuard, init};
pub use media::MediaMetrics;
pub use operator::OperatorMetrics;
pub use registry::Metrics;
pub use service::{ServiceTelemetry, ServiceTelemetryError};
pub use sip::{RegistrationResult, SipMetrics};
pub use store::{InstrumentedStore, StoreMetrics};
