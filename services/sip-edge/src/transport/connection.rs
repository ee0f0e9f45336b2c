//! TCP and TLS connections: accepting, framing what arrives (RFC 3261 §18.3, CRLF keep-alive
//! pings of RFC 5626 §3.5.1 answered with a pong), writing what the engine sends, and
//! opening a connection when a response must go back over a connection that closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sip_core::Transmit;
use sip_msg::{RawFrame, StreamFramer, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::send_queue::send_queue;
use super::{ConnectionHandle, Received, TransportKind, Transports};

/// Bounds on connections, so that a scanner opening sockets cannot exhaust the edge.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections beyond which new ones are closed at once.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (phones on TCP send CRLF
    /// keep-alives or re-register well within it).
    pub idle_timeout: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Messages queued for one connection beyond which its reader takes no further request
    /// from the peer until the peer has read (flow control, `transport::send_queue`).
    pub queue: usize,
    /// Bytes queued for one connection beyond which sends to it fail: a peer that reads
    /// nothing while the edge keeps sending.
    pub max_queued_bytes: usize,
    /// After the peer closes or breaks the framing, how long answers to requests already read
    /// can still go out on the connection.
    pub close_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 50_000,
            idle_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(10),
            queue: 256,
            max_queued_bytes: 4 * 1024 * 1024,
            close_grace: Duration::from_secs(5),
        }
    }
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// How long opening a connection towards a phone may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    transports: Transports,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => continue,
        };
        let this = transports.clone();
        match &tls {
            None => {
                transports.track(tokio::spawn(run(
                    stream,
                    TransportKind::Tcp,
                    peer,
                    local,
                    None,
                    this,
                )));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let timeout = transports.limits.handshake_timeout;
                transports.track(tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            run(tls_stream, TransportKind::Tls, peer, local, None, this).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                }));
            }
        }
    }
}

/// Opens a TCP connection to the transmit's destination and sends it first (§18.2.2).
pub(super) fn connect_and_send(transports: Transports, transmit: Transmit) {
    let this = transports.clone();
    transports.track(tokio::spawn(async move {
        let destination = transmit.destination;
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(destination)).await {
                Ok(Ok(s)) => s,
                _ => {
                    this.report_failure(Transport::Tcp, destination);
                    return;
                }
            };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            this.report_failure(Transport::Tcp, destination);
            return;
        };
        run(
            stream,
            TransportKind::Tcp,
            destination,
            local,
            Some(transmit.contents),
            this,
        )
        .await;
    }));
}

/// Serves one connection until either side closes it.
async fn run<S>(
    stream: S,
    kind: TransportKind,
    peer: SocketAddr,
    local: SocketAddr,
    first: Option<Bytes>,
    transports: Transports,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = send_queue(transports.limits.queue, transports.limits.max_queued_bytes);
    let key = (kind, peer);
    let registered = transports.register_connection(
        key,
        ConnectionHandle {
            id,
            local,
            outgoing: tx.clone(),
        },
    );
    if !registered {
        tracing::warn!(%peer, "connection refused: too many open connections");
        return;
    }
    let transport = match kind {
        TransportKind::Tcp => Transport::Tcp,
        TransportKind::Tls => Transport::Tls,
    };
    if let Some(first) = first {
        let _ = tx.push(first);
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let idle = transports.limits.idle_timeout;
    'read: loop {
        let n = match tokio::time::timeout(idle, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        while let Some(frame) = framer.next_raw() {
            match frame {
                Ok(RawFrame::Message(bytes)) => {
                    if !tx.room_for_answers(idle).await {
                        tracing::debug!(%peer, "closing connection: its answers are not read");
                        break 'read;
                    }
                    let received = Received {
                        transport: transport.clone(),
                        source: peer,
                        local,
                        data: Bytes::from(bytes),
                        received_at: crate::clock::monotonic(),
                    };
                    if transports.events.received(received).await.is_err() {
                        break 'read;
                    }
                }
                Ok(RawFrame::Ping) => {
                    let _ = tx.push(Bytes::from_static(b"\r\n"));
                }
                Ok(RawFrame::Pong) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "closing connection: framing lost");
                    break 'read;
                }
            }
        }
    }
    // Requests already read may still be answered (a 503 after call-control's timeout, a 401
    // from a busy engine): keep the connection in the table, write side open, for a grace
    // period, unless writing fails first (the peer is gone).
    let mut writer_task = writer_task;
    tokio::select! {
        _ = &mut writer_task => {}
        _ = tokio::time::sleep(transports.limits.close_grace) => {}
    }
    transports.unregister_connection(key, id);
    drop(tx);
    // Let queued responses go out before the write half closes; a peer that reads nothing
    // would hold the writer (and the socket) for ever.
    let abort = writer_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer_task)
        .await
        .is_err()
    {
        abort.abort();
    }
}
