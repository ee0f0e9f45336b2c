//! [`Bus`] over NATS (async-nats), for the cluster.
//!
//! Subjects, queue group names and headers are validated here with the same rules as the
//! in-process bus before anything is sent, so both reject the same input. The client
//! reconnects forever with capped exponential backoff and jitter, re-subscribing by itself;
//! connection events are logged. While disconnected, publishes are buffered by the client
//! (up to its command queue) and requests time out.
//!
//! Each subscription is forwarded from the async-nats subscriber into the bounded channel of
//! a [`Subscription`] by a task that drops and counts messages when that channel is full (the
//! slow-consumer policy both buses share) and unsubscribes as soon as the `Subscription` is
//! dropped.
//!
//! Client TLS (`tls://` URLs, a CA file, a client certificate) is in [`tls`](NatsTls).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{
    ConnectOptions, Event, HeaderMap, HeaderName, HeaderValue, RequestErrorKind, ServerAddr,
    SubscribeErrorKind,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

mod tls;

pub use tls::{ClientIdentity, NatsConfigError, NatsTls};

use crate::{Bus, BusError, BusHeaders, BusMessage, DEFAULT_SUBSCRIPTION_CAPACITY, Subscription};

/// How to reach NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The connection name the server shows (e.g. `directory-7f9c`), for operators.
    pub name: String,
    /// Server URLs (`nats://host:port`), the own datacenter's first: the client uses them in
    /// this order and fails over to the next.
    pub servers: Vec<String>,
    /// Messages a subscription may hold before new ones are dropped for it.
    pub subscription_capacity: usize,
    /// How long one connection attempt may take.
    pub connection_timeout: Duration,
    /// How often the client pings the server, to notice a dead link without a TCP reset.
    pub ping_interval: Duration,
    /// The longest pause between two reconnection attempts (the backoff's cap).
    pub max_reconnect_delay: Duration,
    /// What to trust and present over TLS (ADR 0019).
    pub tls: NatsTls,
    /// How often to look whether the first server is back while on another one, to go back to
    /// it (ADR 0022; `nats_prefer`). Zero: stay where the client is.
    pub return_to_first: Duration,
}

impl NatsOptions {
    /// Defaults for a service named `name` connecting to `servers`.
    pub fn new(name: impl Into<String>, servers: Vec<String>) -> NatsOptions {
        NatsOptions {
            name: name.into(),
            servers,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            connection_timeout: Duration::from_secs(5),
            // The client drops a server after two unanswered pings: with 1 s, a server cut
            // off silently (a lost datacenter) is left in about 2–3 s rather than 20–30 s.
            ping_interval: Duration::from_secs(1),
            max_reconnect_delay: Duration::from_secs(2),
            tls: NatsTls::default(),
            return_to_first: Duration::from_secs(5),
        }
    }

    /// The same with these TLS files.
    pub fn with_tls(mut self, tls: NatsTls) -> NatsOptions {
        self.tls = tls;
        self
    }
}

/// How long a flush waits for its round trip through the server.
const FLUSH_ROUND_TRIP: Duration = Duration::from_secs(5);

/// The bus over a NATS connection. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    subscription_capacity: usize,
    dropped: Arc<AtomicU64>,
    /// The task bringing the client back to its first server, stopped with the last clone.
    _return_to_first: Option<Arc<AbortOnDrop>>,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NatsBus {
    /// Connects to one of `options.servers`. Fails if none answers now; once connected, later
    /// outages are ridden out by reconnecting forever. A TLS misconfiguration (mixed schemes,
    /// an unreadable or empty file) fails it with [`BusError::Config`] before connecting.
    pub async fn connect(options: NatsOptions) -> Result<NatsBus, BusError> {
        let servers_text = options.servers.join(",");
        let connect_error = |reason: String| BusError::Connect {
            servers: servers_text.clone(),
            reason,
        };
        let servers = options
            .servers
            .iter()
            .map(|s| s.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| connect_error(e.to_string()))?;
        if servers.is_empty() {
            return Err(connect_error("no server configured".to_owned()));
        }
        let name = options.name.clone();
        let max_delay = options.max_reconnect_delay;
        let first = servers[0].clone();
        let several = servers.len() > 1;
        let mut connect_options = ConnectOptions::new();
        if tls::wants_tls(&options.servers, &options.tls)? {
            connect_options = tls::apply(connect_options, &options.tls)?;
        }
        let client = connect_options
            .name(&options.name)
            .connection_timeout(options.connection_timeout)
            .ping_interval(options.ping_interval)
            // The servers in the order given, the caller's own datacenter's first: a service
            // connected to the other datacenter's server loses its bus in a partition until
            // its pings notice (the e2e partition scenario lost hand-offs that way).
            .retain_servers_order()
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                let name = name.clone();
                async move { log_event(&name, event) }
            })
            .connect(servers)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let return_to_first = (several && !options.return_to_first.is_zero()).then(|| {
            Arc::new(AbortOnDrop(crate::nats_prefer::spawn(
                client.clone(),
                first,
                options.return_to_first,
                options.name.clone(),
            )))
        });
        Ok(NatsBus {
            client,
            subscription_capacity: options.subscription_capacity.max(1),
            dropped: Arc::new(AtomicU64::new(0)),
            _return_to_first: return_to_first,
        })
    }

    /// Messages dropped by this connection's subscriptions because their queues were full.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// True while the connection to a server is up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The underlying client, for what the [`Bus`] contract does not cover (JetStream).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn check_size(&self, headers: &BusHeaders, payload: &Bytes) -> Result<(), BusError> {
        let size = payload.len() + headers.wire_len();
        let limit = self.client.max_payload();
        // max_payload is 0 until the server's INFO arrived; the client checks again then.
        if limit > 0 && size > limit {
            return Err(BusError::PayloadTooLarge { size, limit });
        }
        Ok(())
    }

    fn forward(&self, mut subscriber: async_nats::Subscriber) -> Subscription {
        let (sender, receiver) = mpsc::channel(self.subscription_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let total = self.dropped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sender.closed() => break,
                    next = subscriber.next() => {
                        let Some(message) = next else { break };
                        let subject = message.subject.to_string();
                        match sender.try_send(from_nats(message)) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                counter.fetch_add(1, Ordering::Relaxed);
                                let n = total.fetch_add(1, Ordering::Relaxed) + 1;
                                if n.is_power_of_two() {
                                    tracing::warn!(subject, total = n, "slow consumer: message dropped");
                                }
                            }
                            Err(TrySendError::Closed(_)) => break,
                        }
                    }
                }
            }
            if let Err(error) = subscriber.unsubscribe().await {
                tracing::debug!(%error, "unsubscribe after the subscription was dropped");
            }
        });
        Subscription::new(receiver).with_drop_counter(dropped)
    }
}

/// 0 for the first attempt, then 50 ms doubling up to `max`, with up to 20 % jitter so that
/// many clients do not reconnect in lockstep after a server restart.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    let base = Duration::from_millis(50)
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(max);
    let jitter = rand::random_range(0.0..0.2);
    base.mul_f64(1.0 + jitter).min(max)
}

fn log_event(name: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(connection = name, "NATS connected"),
        Event::Disconnected => {
            tracing::warn!(connection = name, "NATS disconnected; reconnecting")
        }
        Event::LameDuckMode => tracing::warn!(
            connection = name,
            "NATS server entering lame duck mode; will reconnect elsewhere"
        ),
        Event::SlowConsumer(sid) => {
            tracing::warn!(connection = name, sid, "NATS slow consumer")
        }
        Event::ServerError(error) => {
            tracing::error!(connection = name, %error, "NATS server error")
        }
        Event::ClientError(error) => {
            tracing::warn!(connection = name, %error, "NATS client error")
        }
        Event::Draining | Event::Closed => tracing::info!(connection = name, %event, "NATS"),
    }
}

fn to_nats(headers: &BusHeaders) -> Result<Option<HeaderMap>, BusError> {
    headers.validate()?;
    if headers.is_empty() {
        return Ok(None);
    }
    let mut map = HeaderMap::new();
    for (name, value) in &headers.0 {
        let invalid = || BusError::InvalidHeader { name: name.clone() };
        let n: HeaderName = name.parse().map_err(|_| invalid())?;
        let v: HeaderValue = value.parse().map_err(|_| invalid())?;
        map.append(n, v);
    }
    Ok(Some(map))
}

fn from_nats(message: async_nats::Message) -> BusMessage {
    let mut headers = BusHeaders::new();
    if let Some(map) = &message.headers {
        for (name, values) in map.iter() {
            for value in values {
                headers
                    .0
                    .push((name.to_string(), value.as_str().to_owned()));
            }
        }
        // The wire map does not keep order between names: sort for a stable view.
        headers.0.sort_by(|a, b| a.0.cmp(&b.0));
    }
    BusMessage {
        subject: message.subject.to_string(),
        headers,
        payload: message.payload,
        reply_to: message.reply.map(|r| r.to_string()),
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError> {
        crate::subject::validate_publish(subject)?;
        self.check_size(&headers, &payload)?;
        let size = payload.len() + headers.wire_len();
        let result = match to_nats(&headers)? {
            Some(map) => {
                self.client
                    .publish_with_headers(subject.to_owned(), map, payload)
                    .await
            }
            None => self.client.publish(subject.to_owned(), payload).await,
        };
        result.map_err(|e| match e.kind() {
            async_nats::client::PublishErrorKind::MaxPayloadExceeded => BusError::PayloadTooLarge {
                size,
                limit: self.client.max_payload(),
            },
            async_nats::client::PublishErrorKind::InvalidSubject => {
                BusError::InvalidSubject(subject.to_owned())
            }
            async_nats::client::PublishErrorKind::Send => BusError::Disconnected(e.to_string()),
        })
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        crate::subject::validate_subscribe(subject)?;
        let subscriber = self
            .client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| subscribe_error(e, subject, ""))?;
        Ok(self.forward(subscriber))
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        crate::subject::validate_subscribe(subject)?;
        crate::subject::validate_queue_group(group)?;
        let subscriber = self
            .client
            .queue_subscribe(subject.to_owned(), group.to_owned())
            .await
            .map_err(|e| subscribe_error(e, subject, group))?;
        Ok(self.forward(subscriber))
    }

    async fn request(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError> {
        crate::subject::validate_publish(subject)?;
        self.check_size(&headers, &payload)?;
        let size = payload.len() + headers.wire_len();
        let mut request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        if let Some(map) = to_nats(&headers)? {
            request = request.headers(map);
        }
        match self.client.send_request(subject.to_owned(), request).await {
            Ok(reply) => Ok(from_nats(reply)),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::TimedOut => BusError::Timeout {
                    subject: subject.to_owned(),
                    timeout,
                },
                RequestErrorKind::NoResponders => BusError::NoResponders(subject.to_owned()),
                RequestErrorKind::InvalidSubject => BusError::InvalidSubject(subject.to_owned()),
                RequestErrorKind::MaxPayloadExceeded => BusError::PayloadTooLarge {
                    size,
                    limit: self.client.max_payload(),
                },
                RequestErrorKind::Other => BusError::Disconnected(e.to_string()),
            }),
        }
    }

    async fn reply(
        &self,
        request: &BusMessage,
        headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError> {
        let reply_to = request
            .reply_to
            .as_deref()
            .ok_or(BusError::NoReplySubject)?;
        self.publish(reply_to, headers, payload).await
    }

    async fn flush(&self) -> Result<(), BusError> {
        // async-nats's flush only writes the client's buffer to the socket; the server may not
        // have read it yet. A message to our own inbox, on the same connection, comes back
        // only once the server has processed everything sent before it: a subscription made
        // just before is then in effect, and a message another connection publishes right
        // after reaches it (without this, a loaded machine lost an edge's first remote ban).
        let disconnected = |e: &dyn std::fmt::Display| BusError::Disconnected(e.to_string());
        let inbox = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| disconnected(&e))?;
        self.client
            .publish(inbox, Bytes::new())
            .await
            .map_err(|e| disconnected(&e))?;
        self.client.flush().await.map_err(|e| disconnected(&e))?;
        match tokio::time::timeout(FLUSH_ROUND_TRIP, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(BusError::Disconnected(
                "the connection closed during a flush".to_owned(),
            )),
            Err(_) => Err(BusError::Disconnected(format!(
                "no round trip to the server within {FLUSH_ROUND_TRIP:?}"
            ))),
        }
    }
}

fn subscribe_error(e: async_nats::SubscribeError, subject: &str, group: &str) -> BusError {
    match e.kind() {
        SubscribeErrorKind::InvalidSubject => BusError::InvalidSubject(subject.to_owned()),
        SubscribeErrorKind::InvalidQueueName => BusError::InvalidQueueGroup(group.to_owned()),
        SubscribeErrorKind::Other => BusError::Disconnected(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_starts_at_zero_grows_and_is_capped() {
        let max = Duration::from_secs(2);
        assert_eq!(reconnect_delay(1, max), Duration::ZERO);
        let second = reconnect_delay(2, max);
        assert!(second >= Duration::from_millis(50) && second <= Duration::from_millis(60));
        let fifth = reconnect_delay(5, max);
        assert!(fifth >= Duration::from_millis(400) && fifth <= Duration::from_millis(480));
        for attempts in [20, 1000, usize::MAX] {
            assert!(reconnect_delay(attempts, max) <= max);
        }
    }

    #[test]
    fn headers_map_both_ways_with_repeated_names_in_order() {
        let headers = BusHeaders(vec![
            ("traceparent".into(), "00-abc".into()),
            ("x-multi".into(), "1".into()),
            ("x-multi".into(), "2".into()),
        ]);
        let map = to_nats(&headers).unwrap().unwrap();
        let message = async_nats::Message {
            subject: "s".into(),
            reply: None,
            payload: Bytes::new(),
            headers: Some(map),
            status: None,
            description: None,
            length: 0,
        };
        assert_eq!(from_nats(message).headers, headers);
    }

    #[test]
    fn invalid_headers_are_rejected_before_the_client_sees_them() {
        for (name, value) in [("a b", "v"), ("a:b", "v"), ("", "v"), ("ok", "x\r\ny")] {
            let headers = BusHeaders(vec![(name.into(), value.into())]);
            assert!(matches!(
                to_nats(&headers),
                Err(BusError::InvalidHeader { .. })
            ));
        }
        assert!(to_nats(&BusHeaders::new()).unwrap().is_none());
    }
}
