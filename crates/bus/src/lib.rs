//! The bus between calanque's services (ARCHITECTURE: "NATS carries requests and events").
//!
//! [`Bus`] is implemented twice: over NATS for the cluster ([`NatsBus`]), and in-process for
//! the all-in-one mode ([`InProcessBus`]). Both carry the same subjects, headers and payloads,
//! validate subjects and headers with the same rules ([`subject`], [`BusHeaders::validate`]),
//! drop messages for slow consumers the same way, and pass one test suite
//! (`tests/conformance.rs`), so a service cannot tell which one it runs on (ADR 0004).
//!
//! With the `cli` feature, [`cli::NatsTlsArgs`] are the NATS client TLS flags the binaries
//! share (ADR 0019).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

#[cfg(feature = "cli")]
pub mod cli;
pub mod in_process;
pub mod nats;
mod nats_prefer;
pub mod subject;
pub mod trace;

pub use in_process::{InProcessBus, InProcessOptions};
pub use nats::{NatsBus, NatsOptions};
pub use trace::TraceContext;

/// How many messages a subscription may hold before new ones are dropped (both buses).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 8192;

/// Message headers: ordered name/value pairs. W3C trace context travels here as
/// `traceparent` / `tracestate` so that one call is one trace across services.
///
/// Names are printable ASCII without `:` and values carry no CR/LF (NATS' header rules,
/// enforced by both buses). Lookups ignore case. NATS keeps the order of the values of one
/// name but not the order between different names, so receivers must not rely on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusHeaders(pub Vec<(String, String)>);

impl BusHeaders {
    /// No headers.
    pub fn new() -> BusHeaders {
        BusHeaders(Vec::new())
    }

    /// Sets `name` to `value`, replacing any previous value of that name.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every name and value against the wire rules (NATS rejects the others).
    pub fn validate(&self) -> Result<(), BusError> {
        for (name, value) in &self.0 {
            if name.is_empty() || name.chars().any(|c| !c.is_ascii_graphic() || c == ':') {
                return Err(BusError::InvalidHeader { name: name.clone() });
            }
            if value.contains(['\r', '\n']) {
                return Err(BusError::InvalidHeader { name: name.clone() });
            }
        }
        Ok(())
    }

    /// The size the headers take on the NATS wire (`NATS/1.0\r\n`, `name: value\r\n`…,
    /// `\r\n`), counted with the payload against the maximum message size.
    pub fn wire_len(&self) -> usize {
        if self.0.is_empty() {
            return 0;
        }
        let fields: usize = self.0.iter().map(|(n, v)| n.len() + 2 + v.len() + 2).sum();
        "NATS/1.0\r\n".len() + fields + 2
    }
}

/// A message as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// The subject it was published on (never a wildcard).
    pub subject: String,
    /// The publisher's headers.
    pub headers: BusHeaders,
    /// The publisher's bytes, unchanged.
    pub payload: Bytes,
    /// Where to send the reply, for a request.
    pub reply_to: Option<String>,
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The subject is empty or has a malformed token (`a..b`, spaces, a `>` not last), or is
    /// a wildcard where a concrete subject is needed (publish, request).
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    /// The queue group name is empty or contains whitespace.
    #[error("invalid queue group {0:?}")]
    InvalidQueueGroup(String),
    /// A header name is empty, not printable ASCII or contains `:`, or its value contains
    /// CR or LF.
    #[error("invalid header {name:?}")]
    InvalidHeader {
        /// The offending header's name.
        name: String,
    },
    /// No reply arrived within the timeout.
    #[error("request on {subject} timed out after {timeout:?}")]
    Timeout {
        /// The request's subject.
        subject: String,
        /// How long the requester waited.
        timeout: Duration,
    },
    /// Nobody listens on the subject (the request cannot be answered).
    #[error("no responders on {0}")]
    NoResponders(String),
    /// The message has no reply subject, so it cannot be answered.
    #[error("message has no reply subject")]
    NoReplySubject,
    /// The first connection to the NATS servers failed (the backend's message). Later
    /// outages are not errors: the client reconnects by itself.
    #[error("connecting to {servers}: {reason}")]
    Connect {
        /// The server list as configured.
        servers: String,
        /// The backend's message.
        reason: String,
    },
    /// The connection to the bus is down or was closed.
    #[error("bus disconnected: {0}")]
    Disconnected(String),
    /// The client configuration is refused before connecting (TLS files, URL schemes):
    /// retrying cannot help.
    #[error(transparent)]
    Config(#[from] nats::NatsConfigError),
    /// The payload (with its headers) exceeds the bus's maximum message size.
    #[error("payload of {size} bytes exceeds the bus limit of {limit}")]
    PayloadTooLarge {
        /// Payload plus header bytes.
        size: usize,
        /// The bus's maximum message size.
        limit: usize,
    },
}

type UnsubscribeHook = Box<dyn FnOnce() + Send + Sync>;

/// A stream of messages for one subscription. Dropping it unsubscribes.
///
/// Its queue is bounded; when the subscriber falls behind and the queue is full, the bus
/// drops new messages for it (as NATS does for slow consumers) and counts them in
/// [`Subscription::dropped`].
pub struct Subscription {
    receiver: tokio::sync::mpsc::Receiver<BusMessage>,
    dropped: Arc<AtomicU64>,
    on_drop: Option<UnsubscribeHook>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.receiver.len())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Wraps the receiving end that an implementation feeds.
    pub fn new(receiver: tokio::sync::mpsc::Receiver<BusMessage>) -> Subscription {
        Subscription {
            receiver,
            dropped: Arc::new(AtomicU64::new(0)),
            on_drop: None,
        }
    }

    /// Shares the counter the implementation increments for each message it drops because
    /// this subscription's queue was full.
    pub fn with_drop_counter(mut self, dropped: Arc<AtomicU64>) -> Subscription {
        self.dropped = dropped;
        self
    }

    /// Runs `hook` once when the subscription is dropped (the implementation removes its
    /// registration there instead of waiting to notice the closed channel).
    pub fn on_unsubscribe(mut self, hook: impl FnOnce() + Send + Sync + 'static) -> Subscription {
        self.on_drop = Some(Box::new(hook));
        self
    }

    /// The next message; `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<BusMessage> {
        self.receiver.recv().await
    }

    /// The next message if one is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<BusMessage> {
        self.receiver.try_recv().ok()
    }

    /// How many messages were dropped because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.receiver.close();
        if let Some(hook) = self.on_drop.take() {
            hook();
        }
    }
}

/// The bus. Subjects are dot-separated tokens; `*` matches one token, `>` the rest
/// (NATS semantics, which the in-process bus reproduces).
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Fire-and-forget.
    async fn publish(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError>;

    /// Every message on `subject` (wildcards allowed).
    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError>;

    /// Each message on `subject` goes to one member of `group` (replicas share the load).
    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError>;

    /// Sends a request and waits for the first reply.
    async fn request(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError>;

    /// Answers `request` on its reply subject.
    async fn reply(
        &self,
        request: &BusMessage,
        headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError>;

    /// Waits until everything sent so far (publications, subscriptions) has been processed by
    /// the server (NATS: a round trip through it) or reached the subscribers' queues
    /// (in-process). After it, a subscription made before is in effect for what any other
    /// client publishes.
    async fn flush(&self) -> Result<(), BusError>;
}
