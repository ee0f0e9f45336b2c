//! The bus between calanque's services (ARCHITECTURE: "NATS carries requests and events").
//!
//! [`Bus`] is implemented twice: over NATS for the cluster, and in-process for the all-in-one
//! mode. Both carry the same subjects, headers and payloads, and both pass one test suite, so
//! a service cannot tell which one it runs on.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// Message headers: ordered name/value pairs. W3C trace context travels here as
/// `traceparent` / `tracestate` so that one call is one trace across services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusHeaders(pub Vec<(String, String)>);

impl BusHeaders {
    pub fn new() -> BusHeaders {
        BusHeaders(Vec::new())
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.push((name.to_owned(), value.to_owned()));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A message as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    pub subject: String,
    pub headers: BusHeaders,
    pub payload: Bytes,
    /// Where to send the reply, for a request.
    pub reply_to: Option<String>,
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The subject is empty or has a malformed token (`a..b`, spaces, a `>` not last).
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    /// No reply arrived within the timeout.
    #[error("request on {subject} timed out after {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    /// Nobody listens on the subject (the request cannot be answered).
    #[error("no responders on {0}")]
    NoResponders(String),
    /// The message has no reply subject, so it cannot be answered.
    #[error("message has no reply subject")]
    NoReplySubject,
    /// The connection to the bus is down or was closed.
    #[error("bus disconnected: {0}")]
    Disconnected(String),
    /// The payload exceeds the bus's maximum message size.
    #[error("payload of {size} bytes exceeds the bus limit of {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
}

/// A stream of messages for one subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    receiver: tokio::sync::mpsc::Receiver<BusMessage>,
}

impl Subscription {
    /// Wraps the receiving end that an implementation feeds.
    pub fn new(receiver: tokio::sync::mpsc::Receiver<BusMessage>) -> Subscription {
        Subscription { receiver }
    }

    /// The next message; `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<BusMessage> {
        self.receiver.recv().await
    }
}

/// The bus. Subjects are dot-separated tokens; `*` matches one token, `>` the rest
/// (NATS semantics, which the in-process bus reproduces).
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Fire-and-forget.
    async fn publish(&self, subject: &str, headers: BusHeaders, payload: Bytes)
    -> Result<(), BusError>;

    /// Every message on `subject` (wildcards allowed).
    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError>;

    /// Each message on `subject` goes to one member of `group` (replicas share the load).
    async fn queue_subscribe(&self, subject: &str, group: &str)
    -> Result<Subscription, BusError>;

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

    /// Waits until everything published so far has reached the server (NATS) or the
    /// subscribers' queues (in-process).
    async fn flush(&self) -> Result<(), BusError>;
}
