//! One client per etcd member, and which member to ask. etcd-client's balanced channel keeps
//! handing requests to a member it cannot reach: one refusing connections (a third of the
//! requests failed with one member down), or one cut off silently by a partition (requests
//! failed with "broken pipe" for as long as the cut lasted, and after). Here a request goes
//! to the member that answered last; a member that fails a request for a reason of its own
//! (its connection, its lost quorum, no answer within the attempt timeout) is avoided for a
//! while, and the request goes to the next member, within the request's one timeout.
//!
//! Sending a request again elsewhere is safe for what the store sends: reads and puts are
//! idempotent, a transaction's compares fail if its first copy was applied after all (the
//! caller sees a conflict and re-reads), a lease keep-alive is idempotent.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, KvClient, WatchClient};

use super::{MAX_MESSAGE_BYTES, map_error, unavailable_after};
use crate::{LeaseId, StoreError};

/// How long a member that failed a request is asked only when every other one failed too.
const AVOID_FOR: Duration = Duration::from_secs(3);

/// The clients of one member.
pub(super) struct Member {
    pub(super) endpoint: String,
    pub(super) client: Client,
    pub(super) kv: KvClient,
    pub(super) watch: WatchClient,
    avoid_until: Mutex<Option<Instant>>,
}

/// Every member, and the one to ask first.
pub(super) struct Members {
    members: Vec<Member>,
    preferred: AtomicUsize,
    /// The longest one member is waited for before the request goes to the next.
    attempt_timeout: Duration,
}

/// Whether an error is the member's trouble (its connection, its quorum), not the request's.
fn member_trouble(error: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    use tonic::Code;
    match error {
        Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
            Code::Unknown | Code::Internal => {
                let message = status.message();
                message.contains("transport")
                    || message.contains("connection")
                    || message.contains("request timed out")
                    || message.contains("leader")
            }
            _ => false,
        },
        Error::TransportError(_) | Error::IoError(_) => true,
        _ => false,
    }
}

impl Members {
    /// A client per endpoint (connecting lazily), with `options`.
    pub(super) async fn connect(
        endpoints: &[String],
        options: &ConnectOptions,
        attempt_timeout: Duration,
    ) -> Result<Members, etcd_client::Error> {
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone())).await?;
            let kv = client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let watch = client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            members.push(Member {
                endpoint: endpoint.clone(),
                client,
                kv,
                watch,
                avoid_until: Mutex::new(None),
            });
        }
        Ok(Members {
            members,
            preferred: AtomicUsize::new(0),
            attempt_timeout,
        })
    }

    fn avoided(&self, index: usize, now: Instant) -> bool {
        let until = *self.members[index]
            .avoid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|until| until > now)
    }

    fn avoid(&self, index: usize, now: Instant) {
        *self.members[index]
            .avoid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now + AVOID_FOR);
    }

    /// The order to ask the members in: the preferred one, the others, then the avoided ones.
    fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let all: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        let (mut order, avoided): (Vec<usize>, Vec<usize>) =
            all.into_iter().partition(|i| !self.avoided(*i, now));
        order.extend(avoided);
        order
    }

    /// Sends the request `request` makes for a member to one member after another until one
    /// answers, all within `timeout`; an error that is the request's own (not the member's)
    /// is returned at once.
    #[allow(clippy::disallowed_methods)] // wall-clock bounds of network requests
    pub(super) async fn run<T, F, Fut>(
        &self,
        timeout: Duration,
        lease: Option<LeaseId>,
        mut request: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(&Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let mut last_error = None;
        let order = self.order(started);
        let last = order.len().saturating_sub(1);
        for (position, index) in order.into_iter().enumerate() {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let member = &self.members[index];
            // A member gets a share of the time so that another can still be asked; the last
            // one asked (the only one, with a single endpoint) gets all that is left. Capped
            // there too, a single-member store gave a big write a third of its time (a city
            // import answered 503 after 667 ms on a loaded machine).
            let attempt = if position == last {
                left
            } else {
                left.min(self.attempt_timeout)
            };
            match tokio::time::timeout(attempt, request(member)).await {
                Ok(Ok(value)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(error)) if member_trouble(&error) => {
                    tracing::debug!(endpoint = %member.endpoint, %error, "etcd member failed a request: asking another");
                    self.avoid(index, Instant::now());
                    last_error = Some(map_error(error, lease));
                }
                Ok(Err(error)) => return Err(map_error(error, lease)),
                Err(_) => {
                    tracing::debug!(endpoint = %member.endpoint, ?attempt, "etcd member did not answer: asking another");
                    self.avoid(index, Instant::now());
                    last_error = Some(unavailable_after(attempt));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| unavailable_after(timeout)))
    }
}
