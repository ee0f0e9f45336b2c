//! The in-process bus for the all-in-one mode (`calanque run`): the same subjects, headers,
//! wildcards, queue groups and request/reply as NATS, with no server.
//!
//! It owns a registry of subscriptions. Publishing matches the subject against every
//! registered pattern and hands the message to each plain subscription and to one member of
//! each queue group, synchronously (`try_send`), under a `std::sync::Mutex` that is never held
//! across an await. So `publish` never waits for a subscriber, per-publisher order is kept,
//! and `flush` has nothing to wait for.
//!
//! Slow consumers: each subscription's queue holds `subscription_capacity` messages. When it
//! is full the message is dropped for that subscription and counted (per subscription and for
//! the bus), as NATS does for slow consumers; a publisher is never blocked by a subscriber. In
//! a queue group, a full member is skipped for the next member with room; the message is
//! dropped only when every member is full.
//!
//! Matching is a linear scan over the subscriptions, which is ample for the few hundred an
//! all-in-one process holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::subject::{self, Pattern};
use crate::{Bus, BusError, BusHeaders, BusMessage, DEFAULT_SUBSCRIPTION_CAPACITY, Subscription};

/// Limits of the in-process bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProcessOptions {
    /// Messages a subscription may hold before new ones are dropped for it.
    pub subscription_capacity: usize,
    /// The largest payload plus headers accepted, as NATS' `max_payload` (1 MiB by default).
    pub max_payload: usize,
}

impl Default for InProcessOptions {
    fn default() -> InProcessOptions {
        InProcessOptions {
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            max_payload: 1024 * 1024,
        }
    }
}

/// The bus inside one process. Cloning shares the same bus.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: InProcessOptions,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    plain: HashMap<u64, Member>,
    /// Keyed by (subject pattern, group name): as in NATS, members of a group share one subject.
    groups: HashMap<(String, String), Group>,
}

#[derive(Debug)]
struct Member {
    pattern: Pattern,
    sender: mpsc::Sender<BusMessage>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Group {
    pattern: Pattern,
    members: Vec<(u64, Member)>,
    /// Round-robin position of the next member to try.
    next: usize,
}

impl Default for InProcessBus {
    fn default() -> InProcessBus {
        InProcessBus::new(InProcessOptions::default())
    }
}

impl InProcessBus {
    /// An empty bus.
    pub fn new(options: InProcessOptions) -> InProcessBus {
        InProcessBus {
            inner: Arc::new(Inner {
                options,
                registry: Mutex::new(Registry::default()),
                next_id: AtomicU64::new(1),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Messages dropped on this bus because a subscriber's queue was full.
    pub fn dropped_messages(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Live subscriptions (plain and queue-group members), for tests and metrics.
    pub fn subscription_count(&self) -> usize {
        let registry = self.inner.lock();
        registry.plain.len()
            + registry
                .groups
                .values()
                .map(|g| g.members.len())
                .sum::<usize>()
    }

    fn register(&self, subject: &str, pattern: Pattern, group: Option<&str>) -> Subscription {
        let (sender, receiver) = mpsc::channel(self.inner.options.subscription_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            pattern: pattern.clone(),
            sender,
            dropped: dropped.clone(),
        };
        let key = group.map(|g| (subject.to_owned(), g.to_owned()));
        {
            let mut registry = self.inner.lock();
            match &key {
                None => {
                    registry.plain.insert(id, member);
                }
                Some(key) => registry
                    .groups
                    .entry(key.clone())
                    .or_insert_with(|| Group {
                        pattern,
                        members: Vec::new(),
                        next: 0,
                    })
                    .members
                    .push((id, member)),
            }
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        Subscription::new(receiver)
            .with_drop_counter(dropped)
            .on_unsubscribe(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.lock().remove(id, key.as_ref());
                }
            })
    }

    /// Validates and delivers; returns how many subscriptions (a group counting once) had
    /// interest, which is what NATS' "no responders" is based on.
    fn deliver(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
        reply_to: Option<String>,
    ) -> Result<usize, BusError> {
        subject::validate_publish(subject)?;
        headers.validate()?;
        let size = payload.len() + headers.wire_len();
        if size > self.inner.options.max_payload {
            return Err(BusError::PayloadTooLarge {
                size,
                limit: self.inner.options.max_payload,
            });
        }
        let message = BusMessage {
            subject: subject.to_owned(),
            headers,
            payload,
            reply_to,
        };
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut registry = self.inner.lock();
        let mut interest = 0;
        let mut closed = Vec::new();
        for (id, member) in &registry.plain {
            if !member.pattern.matches(&tokens) {
                continue;
            }
            match member.sender.try_send(message.clone()) {
                Ok(()) => interest += 1,
                Err(TrySendError::Full(_)) => {
                    interest += 1;
                    self.count_drop(&member.dropped, subject);
                }
                Err(TrySendError::Closed(_)) => closed.push(*id),
            }
        }
        for id in closed {
            registry.plain.remove(&id);
        }
        for group in registry.groups.values_mut() {
            if group.pattern.matches(&tokens) && self.deliver_to_group(group, &message) {
                interest += 1;
            }
        }
        registry.groups.retain(|_, g| !g.members.is_empty());
        Ok(interest)
    }

    /// Hands the message to the next member with room; false when no member is alive.
    fn deliver_to_group(&self, group: &mut Group, message: &BusMessage) -> bool {
        group.members.retain(|(_, m)| !m.sender.is_closed());
        let count = group.members.len();
        if count == 0 {
            return false;
        }
        let start = group.next % count;
        let mut pending = message.clone();
        for offset in 0..count {
            let index = (start + offset) % count;
            match group.members[index].1.sender.try_send(pending) {
                Ok(()) => {
                    group.next = index + 1;
                    return true;
                }
                Err(TrySendError::Full(m) | TrySendError::Closed(m)) => pending = m,
            }
        }
        group.next = start + 1;
        self.count_drop(&group.members[start].1.dropped, &message.subject);
        true
    }

    fn count_drop(&self, counter: &AtomicU64, subject: &str) {
        counter.fetch_add(1, Ordering::Relaxed);
        let total = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_power_of_two() {
            tracing::warn!(subject, total, "slow consumer: message dropped");
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent even if a holder panicked (no await, no partial
        // updates that matter), so a poisoned lock is used as is.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registry {
    fn remove(&mut self, id: u64, group: Option<&(String, String)>) {
        match group {
            None => {
                self.plain.remove(&id);
            }
            Some(key) => {
                if let Some(g) = self.groups.get_mut(key) {
                    g.members.retain(|(member, _)| *member != id);
                    if g.members.is_empty() {
                        self.groups.remove(key);
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.deliver(subject, headers, payload, None).map(|_| ())
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        let pattern = Pattern::parse(subject)?;
        Ok(self.register(subject, pattern, None))
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        let pattern = Pattern::parse(subject)?;
        subject::validate_queue_group(group)?;
        Ok(self.register(subject, pattern, Some(group)))
    }

    async fn request(
        &self,
        subject: &str,
        headers: BusHeaders,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError> {
        subject::validate_publish(subject)?;
        let inbox = format!(
            "_INBOX.{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut replies = self.register(&inbox, Pattern::parse(&inbox)?, None);
        if self.deliver(subject, headers, payload, Some(inbox))? == 0 {
            return Err(BusError::NoResponders(subject.to_owned()));
        }
        match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(BusError::Disconnected("in-process bus closed".to_owned())),
            Err(_) => Err(BusError::Timeout {
                subject: subject.to_owned(),
                timeout,
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
        // A requester that gave up has no inbox any more; like NATS, the reply just vanishes.
        self.deliver(reply_to, headers, payload, None).map(|_| ())
    }

    async fn flush(&self) -> Result<(), BusError> {
        // Delivery is synchronous: everything published is already in the queues.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_bus(capacity: usize) -> InProcessBus {
        InProcessBus::new(InProcessOptions {
            subscription_capacity: capacity,
            ..InProcessOptions::default()
        })
    }

    #[tokio::test]
    async fn dropping_a_subscription_removes_it_from_the_registry() {
        let bus = InProcessBus::default();
        let a = bus.subscribe("a.>").await.unwrap();
        let b = bus.queue_subscribe("a.b", "g").await.unwrap();
        let c = bus.queue_subscribe("a.b", "g").await.unwrap();
        assert_eq!(bus.subscription_count(), 3);
        drop(a);
        assert_eq!(bus.subscription_count(), 2);
        drop(b);
        drop(c);
        assert_eq!(bus.subscription_count(), 0);
        assert!(bus.inner.lock().groups.is_empty());
    }

    #[tokio::test]
    async fn a_full_subscription_drops_and_counts_without_blocking_the_publisher() {
        let bus = small_bus(4);
        let mut slow = bus.subscribe("s").await.unwrap();
        for i in 0..10u8 {
            bus.publish("s", BusHeaders::new(), Bytes::from(vec![i]))
                .await
                .unwrap();
        }
        assert_eq!(slow.dropped(), 6);
        assert_eq!(bus.dropped_messages(), 6);
        for i in 0..4u8 {
            assert_eq!(slow.next().await.unwrap().payload, Bytes::from(vec![i]));
        }
    }

    #[tokio::test]
    async fn a_full_group_member_is_skipped_for_one_with_room() {
        let bus = small_bus(2);
        let mut a = bus.queue_subscribe("q", "g").await.unwrap();
        let mut b = bus.queue_subscribe("q", "g").await.unwrap();
        for _ in 0..4 {
            bus.publish("q", BusHeaders::new(), Bytes::new())
                .await
                .unwrap();
        }
        assert_eq!(bus.dropped_messages(), 0);
        // Both full now: the fifth is dropped once, not duplicated.
        bus.publish("q", BusHeaders::new(), Bytes::new())
            .await
            .unwrap();
        assert_eq!(bus.dropped_messages(), 1);
        assert_eq!(a.dropped() + b.dropped(), 1);
        let mut received = 0;
        while a.try_next().is_some() {
            received += 1;
        }
        while b.try_next().is_some() {
            received += 1;
        }
        assert_eq!(received, 4);
    }

    #[tokio::test]
    async fn payload_over_the_limit_is_rejected() {
        let bus = InProcessBus::new(InProcessOptions {
            max_payload: 16,
            ..InProcessOptions::default()
        });
        let err = bus
            .publish("p", BusHeaders::new(), Bytes::from(vec![0u8; 17]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            BusError::PayloadTooLarge {
                size: 17,
                limit: 16
            }
        ));
    }

    #[tokio::test]
    async fn reply_without_reply_subject_is_an_error() {
        let bus = InProcessBus::default();
        let message = BusMessage {
            subject: "x".into(),
            headers: BusHeaders::new(),
            payload: Bytes::new(),
            reply_to: None,
        };
        assert!(matches!(
            bus.reply(&message, BusHeaders::new(), Bytes::new()).await,
            Err(BusError::NoReplySubject)
        ));
    }
}
