//! The cluster store: [`Store`] over etcd's v3 API (etcd-client).
//!
//! Owns the mapping of the contract onto etcd (compares, transactions, leases, watches),
//! the bound on every request (an outage answers `Unavailable` within the request timeout,
//! never hangs), and watch resumption: a watch whose stream breaks is re-created from the
//! revision after the last one it delivered, so an etcd restart neither loses nor repeats
//! events. Client TLS (`https://` endpoints, mutual TLS) is in [`tls`](EtcdTls).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use members::Members;
use tokio::sync::mpsc;

mod members;
mod tls;

pub use tls::{ClientIdentity, EtcdConfigError, EtcdTls};

use crate::{
    Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch, WatchEvent,
};

/// Largest response accepted (a list of the whole directory, a watch batch of a bulk
/// import); etcd's own request cap is set by `--max-request-bytes` (ADR 0005).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Buffered events per watch before the watch task waits for its reader.
const WATCH_BUFFER: usize = 1024;
/// First and longest pause between attempts to re-create a broken watch.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs of the members, e.g. `http://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Bound on establishing a connection to one member.
    pub connect_timeout: Duration,
    /// Bound on every request, connection included: past it the request fails with
    /// `Unavailable`.
    pub request_timeout: Duration,
    /// What to trust and present over `https://` endpoints (ADR 0019).
    pub tls: EtcdTls,
}

impl EtcdConfig {
    /// Defaults (2 s to connect, 5 s per request) for these endpoints.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            tls: EtcdTls::default(),
        }
    }

    /// The same with these TLS files.
    pub fn with_tls(mut self, tls: EtcdTls) -> EtcdConfig {
        self.tls = tls;
        self
    }
}

/// [`Store`] on an etcd cluster. Cheap to clone (shares the connections).
#[derive(Clone)]
pub struct EtcdStore {
    members: Arc<Members>,
    request_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Prepares connections to the endpoints. Connecting is lazy: a member that is down now
    /// makes requests fail with `Unavailable` until it is back, and does not fail this call.
    /// A TLS misconfiguration (mixed schemes, files for `http://`, an unreadable or empty
    /// file) fails it with [`StoreError::Config`].
    pub async fn connect(config: &EtcdConfig) -> Result<EtcdStore, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_timeout(config.request_timeout)
            // Detects a dead member (partition, not only a reset) within about two seconds, on
            // idle watch streams too, so that requests stop going to it: a member cut off
            // silently otherwise takes every request sent its way to its timeout, and a
            // failover controller loses its lease that way (the two-datacenter e2e showed 6 s).
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
            .with_keep_alive_while_idle(true);
        let use_tls = tls::wants_tls(&config.endpoints, &config.tls)?;
        if use_tls {
            options = options.with_tls(tls::options(&config.tls)?);
        }
        // A member gets a third of the request's time before it goes to the next; the last one
        // asked (the only one, with one endpoint) gets all that is left.
        let attempt_timeout = (config.request_timeout / 3).max(Duration::from_millis(500));
        let members = tokio::time::timeout(
            config.connect_timeout,
            Members::connect(&config.endpoints, &options, attempt_timeout),
        )
        .await
        .map_err(|_| unavailable_after(config.connect_timeout))?
        .map_err(|e| match e {
            // Building the client does no I/O (no credentials are configured): a transport
            // error here is tonic refusing the TLS setup, which retrying cannot fix.
            etcd_client::Error::TransportError(e) if use_tls => {
                StoreError::Config(EtcdConfigError::Setup(error_chain(&e)))
            }
            e => map_error(e, None),
        })?;
        Ok(EtcdStore {
            members: Arc::new(members),
            request_timeout: config.request_timeout,
        })
    }

    /// Compacts etcd's history up to `revision`: watches from earlier revisions get
    /// [`StoreError::Compacted`]. (A cluster normally runs etcd's own auto-compaction.)
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.bounded(|m| {
            let mut kv = m.kv.clone();
            async move {
                kv.compact(revision, Some(CompactionOptions::new().with_physical()))
                    .await
            }
        })
        .await
        .map(drop)
    }

    /// One request, to one member after another (see `members`), bounded by the timeout.
    async fn bounded<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: FnMut(&members::Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.members.run(self.request_timeout, None, request).await
    }
}

/// An error and its sources, `a: b: c` (tonic's transport error says only "transport
/// error" itself).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their source's message; say each thing once.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn unavailable_after(timeout: Duration) -> StoreError {
    StoreError::Unavailable(format!("etcd did not answer within {timeout:?}"))
}

/// Maps etcd's errors onto the contract. Anything that is not the caller's fault is
/// `Unavailable`: the caller answers 503 and retries.
fn map_error(error: etcd_client::Error, lease: Option<LeaseId>) -> StoreError {
    use std::error::Error as _;

    use etcd_client::Error;
    use tonic::Code;
    match error {
        Error::GRpcStatus(status) => {
            let message = status.message().to_owned();
            match status.code() {
                Code::NotFound if message.contains("lease not found") => {
                    StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0)))
                }
                Code::OutOfRange if message.contains("compacted") => StoreError::Compacted {
                    requested: 0,
                    oldest: 0,
                },
                Code::ResourceExhausted => StoreError::TooLarge(message),
                Code::InvalidArgument
                    if message.contains("too many operations") || message.contains("too large") =>
                {
                    StoreError::TooLarge(message)
                }
                Code::InvalidArgument => StoreError::InvalidRequest(message),
                // The cause (a TLS alert, a refused certificate) is in the status's sources.
                code => StoreError::Unavailable(match status.source() {
                    Some(cause) => format!("etcd: {code:?}: {message}: {}", error_chain(cause)),
                    None => format!("etcd: {code:?}: {message}"),
                }),
            }
        }
        Error::LeaseKeepAliveError(_) => StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0))),
        Error::InvalidArgs(message) => StoreError::InvalidRequest(message),
        other => StoreError::Unavailable(format!("etcd: {}", error_chain(&other))),
    }
}

fn key_value(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv
        .key_str()
        .map_err(|_| StoreError::InvalidRequest("etcd key is not UTF-8".to_owned()))?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StoreError::Unavailable("etcd answered without a header".to_owned()))
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l.0))
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let response = self
            .bounded(|m| {
                let mut kv = m.kv.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        response.kvs().first().map(key_value).transpose()
    }

    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let response = self
            .bounded(|m| {
                let mut kv = m.kv.clone();
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = header_revision(response.header())?;
        let kvs = response
            .kvs()
            .iter()
            .map(key_value)
            .collect::<Result<_, _>>()?;
        Ok((kvs, revision))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        let response = self
            .members
            .run(self.request_timeout, lease, |m| {
                let mut kv = m.kv.clone();
                let value = value.to_vec();
                async move { kv.put(key, value, put_options(lease)).await }
            })
            .await?;
        header_revision(response.header())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let response = self
            .bounded(|m| {
                let mut kv = m.kv.clone();
                async move { kv.delete(key, None).await }
            })
            .await?;
        Ok(response.deleted() > 0)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let lease = ops.iter().find_map(|op| match op {
            Op::Put { lease, .. } => *lease,
            _ => None,
        });
        let compares: Vec<EtcdCompare> = compares
            .into_iter()
            .map(|compare| match compare {
                Compare::ModRevision(key, revision) => {
                    EtcdCompare::mod_revision(key, CompareOp::Equal, revision)
                }
                // A missing key has version 0 in etcd's comparisons.
                Compare::Absent(key) => EtcdCompare::version(key, CompareOp::Equal, 0),
                Compare::Present(key) => EtcdCompare::version(key, CompareOp::Greater, 0),
            })
            .collect();
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    TxnOp::put(key, value.to_vec(), put_options(lease))
                }
                Op::Delete { key } => TxnOp::delete(key, None),
                Op::DeletePrefix { prefix } => {
                    TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()))
                }
            })
            .collect();
        let request = Txn::new().when(compares).and_then(ops);
        let response = self
            .members
            .run(self.request_timeout, lease, |m| {
                let mut kv = m.kv.clone();
                let request = request.clone();
                async move { kv.txn(request).await }
            })
            .await?;
        Ok(TxnOutcome {
            succeeded: response.succeeded(),
            revision: header_revision(response.header())?,
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        // etcd counts in whole seconds (and raises a TTL below its minimum, 1.5 × the
        // election timeout, to that minimum).
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        let response = self
            .bounded(|m| {
                let mut client = m.client.clone();
                async move { client.lease_grant(seconds, None).await }
            })
            .await?;
        Ok(LeaseId(response.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        // One request on a keep-alive stream; etcd-client reads the answer and reports a
        // TTL of 0 (unknown lease) as an error. The stream closes when dropped.
        self.members
            .run(self.request_timeout, Some(lease), |m| {
                let mut client = m.client.clone();
                async move { client.lease_keep_alive(lease.0).await }
            })
            .await
            .map(drop)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.members
            .run(self.request_timeout, Some(lease), |m| {
                let mut client = m.client.clone();
                async move { client.lease_revoke(lease.0).await }
            })
            .await
            .map(drop)
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        let mut task = WatchTask {
            members: self.members.clone(),
            prefix: prefix.to_owned(),
            next: from_revision.max(0),
            timeout: self.request_timeout,
            sender: None,
        };
        // The first stream is opened here so that an outage fails this call, and so that
        // "from now" is pinned to the revision etcd reports when it creates the watch.
        let stream = task.open().await?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        task.sender = Some(sender);
        tokio::spawn(task.run(stream));
        Ok(Watch::new(receiver))
    }
}

struct WatchTask {
    members: Arc<Members>,
    prefix: String,
    /// The first revision not delivered yet; 0 until etcd has told "now".
    next: Revision,
    timeout: Duration,
    sender: Option<mpsc::Sender<Result<WatchEvent, StoreError>>>,
}

/// Why reading a watch stream stopped.
enum Broken {
    /// The reader dropped the watch: stop.
    Dropped,
    /// The stream failed (etcd restarted, connection lost): open a new one.
    Stream(String),
    /// The watch cannot go on; the error is its last item.
    Fatal(StoreError),
}

impl WatchTask {
    /// Opens a watch stream from `next` and waits for etcd to confirm it.
    async fn open(&mut self) -> Result<WatchStream, StoreError> {
        let mut options = WatchOptions::new().with_prefix().with_progress_notify();
        if self.next > 0 {
            options = options.with_start_revision(self.next);
        }
        let (stream, created) = self
            .members
            .run(self.timeout, None, |m| {
                let mut client = m.watch.clone();
                let (prefix, options) = (self.prefix.clone(), options.clone());
                async move {
                    let mut stream = client.watch(prefix, Some(options)).await?;
                    let created = stream.message().await?;
                    Ok::<_, etcd_client::Error>((stream, created))
                }
            })
            .await?;
        match created {
            Some(response) if response.created() => {
                if self.next == 0 {
                    self.next = header_revision(response.header())? + 1;
                }
                Ok(stream)
            }
            _ => Err(StoreError::Unavailable(
                "etcd closed the watch before creating it".to_owned(),
            )),
        }
    }

    async fn run(mut self, first: WatchStream) {
        let mut stream = Some(first);
        let mut pause = RETRY_FIRST;
        // Ends when the reader drops the watch or the watch fails for good; re-opens the
        // stream with a capped backoff while etcd is unreachable.
        loop {
            let current = match stream.take() {
                Some(current) => current,
                None => {
                    let Some(sender) = self.sender.clone() else {
                        return;
                    };
                    tokio::select! {
                        () = sender.closed() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                    match self.open().await {
                        Ok(reopened) => reopened,
                        Err(e) => {
                            tracing::debug!(error = %e, "re-opening an etcd watch failed");
                            continue;
                        }
                    }
                }
            };
            match self.read(current, &mut pause).await {
                Broken::Dropped => return,
                Broken::Stream(reason) => {
                    tracing::debug!(%reason, next = self.next, "etcd watch broke; resuming");
                }
                Broken::Fatal(error) => {
                    if let Some(sender) = &self.sender {
                        let _ = sender.send(Err(error)).await;
                    }
                    return;
                }
            }
        }
    }

    async fn read(&mut self, mut stream: WatchStream, pause: &mut Duration) -> Broken {
        let Some(sender) = self.sender.clone() else {
            return Broken::Dropped;
        };
        loop {
            let message = tokio::select! {
                () = sender.closed() => return Broken::Dropped,
                message = stream.message() => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return Broken::Stream("stream ended".to_owned()),
                Err(e) => return Broken::Stream(e.to_string()),
            };
            if response.compact_revision() > 0 {
                return Broken::Fatal(StoreError::Compacted {
                    requested: self.next,
                    oldest: response.compact_revision(),
                });
            }
            if response.canceled() {
                return Broken::Stream(format!("canceled: {}", response.cancel_reason()));
            }
            *pause = RETRY_FIRST;
            let events = response.events();
            if events.is_empty() {
                // A progress notification: etcd sends them only once the watcher has caught
                // up, so everything up to the header's revision has been delivered.
                if !response.created()
                    && let Some(header) = response.header()
                {
                    self.next = self.next.max(header.revision() + 1);
                }
                continue;
            }
            let mut last = self.next - 1;
            for event in events {
                let Some(kv) = event.kv() else { continue };
                let converted = match event.event_type() {
                    EventType::Put => key_value(kv).map(WatchEvent::Put),
                    EventType::Delete => kv
                        .key_str()
                        .map(|key| WatchEvent::Delete {
                            key: key.to_owned(),
                            revision: kv.mod_revision(),
                        })
                        .map_err(|_| {
                            StoreError::InvalidRequest("etcd key is not UTF-8".to_owned())
                        }),
                };
                last = last.max(kv.mod_revision());
                if sender.send(converted).await.is_err() {
                    return Broken::Dropped;
                }
            }
            // A response never splits a revision (no fragmenting asked), so everything up to
            // `last` has been delivered.
            self.next = last + 1;
        }
    }
}
