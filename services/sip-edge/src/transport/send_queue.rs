//! One connection's send queue, with flow control towards the peer.
//!
//! A peer that sends faster than it reads its answers (a gateway or a legacy PBX pipelining a
//! peak's transactions on one connection) makes the edge's writes wait on TCP. A bounded queue
//! would then refuse answers, and over TCP nothing retransmits them: the peer's transactions
//! time out. So the queue takes every answer, and the connection's reader stops taking
//! requests from the peer while more than `pause_at` messages are queued; TCP then slows the
//! peer down. The requests the engine holds already still get their answers, so the queue can
//! pass `pause_at` by as many; `max_bytes` bounds it for a peer that reads nothing at all while
//! the edge keeps sending (requests of its own, retransmissions), and sends beyond it fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

/// The sending side, shared by everything that writes to the connection.
#[derive(Debug, Clone)]
pub(super) struct SendQueue {
    tx: mpsc::UnboundedSender<Bytes>,
    state: Arc<State>,
}

/// The connection's writer's side.
#[derive(Debug)]
pub(super) struct Receiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Signalled when the writer takes a message, or is gone.
    taken: Notify,
    pause_at: usize,
    max_bytes: usize,
}

/// A send the queue refused: the writer is gone, or the peer left `max_bytes` unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused;

pub(super) fn send_queue(pause_at: usize, max_bytes: usize) -> (SendQueue, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        messages: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        taken: Notify::new(),
        pause_at: pause_at.max(1),
        max_bytes,
    });
    (
        SendQueue {
            tx,
            state: state.clone(),
        },
        Receiver { rx, state },
    )
}

impl SendQueue {
    pub(super) fn push(&self, bytes: Bytes) -> Result<(), Refused> {
        let len = bytes.len();
        if self.state.bytes.load(Ordering::Acquire) + len > self.state.max_bytes {
            return Err(Refused);
        }
        // Counted before it can be taken, so the writer never counts below zero.
        self.state.messages.fetch_add(1, Ordering::AcqRel);
        self.state.bytes.fetch_add(len, Ordering::AcqRel);
        self.tx.send(bytes).map_err(|_| {
            self.state.messages.fetch_sub(1, Ordering::AcqRel);
            self.state.bytes.fetch_sub(len, Ordering::AcqRel);
            Refused
        })
    }

    /// Waits until the queue is below `pause_at`, for the reader before it takes the peer's
    /// next request. False when it stayed full for `patience` or the writer is gone.
    pub(super) async fn room_for_answers(&self, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before the check, so a message taken in between still wakes it.
            let taken = self.state.taken.notified();
            if self.tx.is_closed() {
                return false;
            }
            if self.state.messages.load(Ordering::Acquire) < self.state.pause_at {
                return true;
            }
            if tokio::time::timeout_at(deadline, taken).await.is_err() {
                return false;
            }
        }
    }
}

impl Receiver {
    pub(super) async fn recv(&mut self) -> Option<Bytes> {
        let bytes = self.rx.recv().await?;
        self.state.messages.fetch_sub(1, Ordering::AcqRel);
        self.state.bytes.fetch_sub(bytes.len(), Ordering::AcqRel);
        self.state.taken.notify_waiters();
        Some(bytes)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.rx.close();
        self.state.taken.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[tokio::test]
    async fn takes_answers_past_the_pause_and_refuses_past_the_byte_bound() {
        let (queue, mut receiver) = send_queue(2, 100);
        for _ in 0..5 {
            queue.push(message(20)).unwrap();
        }
        assert_eq!(queue.push(message(1)), Err(Refused), "100 bytes queued");
        assert_eq!(receiver.recv().await.unwrap().len(), 20);
        queue.push(message(20)).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_waits_until_the_writer_takes_it_below_the_pause() {
        let (queue, mut receiver) = send_queue(2, 1_000);
        assert!(queue.room_for_answers(Duration::from_secs(1)).await);
        for _ in 0..3 {
            queue.push(message(10)).unwrap();
        }
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.room_for_answers(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        receiver.recv().await.unwrap();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "2 queued: still at the pause");
        receiver.recv().await.unwrap();
        assert!(waiting.await.unwrap(), "1 queued: room again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_gives_up_after_its_patience_or_when_the_writer_is_gone() {
        let (queue, receiver) = send_queue(1, 1_000);
        queue.push(message(10)).unwrap();
        assert!(!queue.room_for_answers(Duration::from_secs(5)).await);
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.room_for_answers(Duration::from_secs(600)).await }
        });
        tokio::task::yield_now().await;
        drop(receiver);
        assert!(!waiting.await.unwrap());
        assert_eq!(queue.push(message(1)), Err(Refused));
    }
}
