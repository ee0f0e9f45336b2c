//! What goes into the transaction layer ([`Input`]), what comes out ([`Output`]) and the
//! events it reports to the transaction user ([`Event`]).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sip_msg::{Request, Response, SipMessage, Transport};

use super::key::TransactionKey;
use crate::Transmit;

/// Something that happened outside the layer.
#[derive(Debug, Clone)]
pub enum Input {
    /// A datagram (or one frame cut from a stream) as received. The layer parses it; an
    /// unparseable request is answered per its parse verdict (400/505/513 to the top Via,
    /// §18.2.2) or dropped, an unparseable response is dropped. Nothing malformed reaches
    /// the TU.
    Datagram {
        transport: Transport,
        source: SocketAddr,
        data: Bytes,
    },
    /// A message already parsed (e.g. by a stream framer).
    Message {
        transport: Transport,
        source: SocketAddr,
        message: Box<SipMessage>,
    },
    /// Sending to `destination` over `transport` failed (ICMP unreachable, connection refused
    /// or reset). With `key`, only that transaction is affected; without, every transaction
    /// currently sending there (a linear scan: transport errors are rare).
    TransportError {
        transport: Transport,
        destination: SocketAddr,
        key: Option<TransactionKey>,
    },
    /// Nothing but the passage of time: fire due timers.
    Timeout,
}

/// What the layer asks of its caller, drained by
/// [`poll_output`](super::TransactionLayer::poll_output).
#[derive(Debug, Clone)]
pub enum Output {
    /// Put these bytes on the wire.
    Transmit(Transmit),
    /// Tell the transaction user.
    Event(Event),
    /// Nothing queued: call back with `handle_input(t, Input::Timeout)` at this instant
    /// (an hour ahead when no timer is armed).
    Timeout(Instant),
}

/// What the layer reports to the transaction user (TU).
#[derive(Debug, Clone)]
pub enum Event {
    /// A new request created a server transaction; answer it with
    /// [`send_response`](super::TransactionLayer::send_response). The top Via carries
    /// `received`/`rport` as the transport layer must add them (§18.2.1, RFC 3581).
    Request {
        key: TransactionKey,
        request: Box<Request>,
        source: SocketAddr,
        transport: Transport,
    },
    /// A response for a client transaction: provisional and final, and every 2xx (including
    /// other forks' and retransmissions) while an INVITE transaction is Accepted (RFC 6026).
    Response {
        key: TransactionKey,
        response: Box<Response>,
        source: SocketAddr,
    },
    /// Timer B or F (no final response) or H (no ACK for our non-2xx) fired.
    Timeout { key: TransactionKey },
    /// The transport could not deliver the transaction's message (§17.1.1.2, §17.1.2.2,
    /// §17.2.1, §17.2.2).
    TransportError { key: TransactionKey },
    /// The transaction ended; its key is dead from now on.
    Terminated { key: TransactionKey },
    /// An ACK matching no server transaction in Completed/Confirmed: an ACK for a 2xx, which
    /// belongs to the dialog (§13.3.1.4), passed to the TU (also when it matched an INVITE
    /// server transaction in Accepted, RFC 6026 §8.7).
    Ack {
        request: Box<Request>,
        source: SocketAddr,
        transport: Transport,
    },
    /// A CANCEL matched an INVITE server transaction that has no final response yet (§9.2).
    /// The layer already answered the CANCEL with 200; the TU should now answer the INVITE
    /// (normally 487 Request Terminated).
    Cancel {
        cancel_key: TransactionKey,
        invite_key: TransactionKey,
        request: Box<Request>,
    },
    /// A response matching no client transaction (§17.1.3), e.g. a 2xx from another fork
    /// after the INVITE transaction ended; a UAC core hands 2xx to its dialogs.
    StrayResponse {
        response: Box<Response>,
        source: SocketAddr,
        transport: Transport,
    },
}

/// The RFC state of a live transaction (the union of the four machines' states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// INVITE client: request sent, nothing heard.
    Calling,
    /// Non-INVITE client or server: request sent / received, nothing final yet.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A 2xx to an INVITE was received (client) or sent (server) (RFC 6026).
    Accepted,
    /// A final (non-2xx for INVITE) response was received or sent; absorbing retransmissions.
    Completed,
    /// INVITE server: the ACK for our non-2xx arrived.
    Confirmed,
}
