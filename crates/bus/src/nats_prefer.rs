//! Back to the first server once it is back (ADR 0022).
//!
//! The servers are listed the own datacenter's first, and the client connects to them in that
//! order. But after its own server failed, the client stays on the next one, the other
//! datacenter's, until that connection breaks: a later cut between the datacenters then takes
//! its bus, the case the order exists to avoid. So a task looks at the first server now and
//! then. When it answers twice in a row (so a server restarting in a loop is not chased) and it
//! is not the server the client is on, the client reconnects, which with the servers' order
//! kept lands on the first one. The reconnection is a few milliseconds without a connection;
//! async-nats restores the subscriptions.
//!
//! Which server the client is on is its `server_id`, the one the INFO of the server it
//! connected to gave; once the task has seen it is the first server's, it looks again only
//! after the client reconnected. The first server's is read from the INFO it sends, in clear, to any TCP
//! connection before anything else (TLS or not), so the probe needs no credentials.

use std::time::Duration;

use async_nats::ServerAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The longest INFO line read.
const MAX_INFO: usize = 16 * 1024;

/// Starts the task that brings `client` back to `first`; [`NatsBus`](crate::nats::NatsBus)
/// aborts it when its last clone is dropped.
pub(crate) fn spawn(
    client: async_nats::Client,
    first: ServerAddr,
    every: Duration,
    name: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut answered_in_a_row = 0u32;
        // The server the client was last seen on the first one: no probe while it stays there
        // (the server id changes with every reconnection, to the first server or not).
        let mut confirmed_on_first: Option<String> = None;
        loop {
            tokio::time::sleep(every).await;
            if client.connection_state() != async_nats::connection::State::Connected {
                answered_in_a_row = 0;
                continue;
            }
            let on = client.server_info().server_id;
            if confirmed_on_first.as_deref() == Some(on.as_str()) {
                continue;
            }
            match server_id_at(&first, every).await {
                Some(id) if id == on => {
                    answered_in_a_row = 0;
                    confirmed_on_first = Some(on);
                }
                Some(_) => answered_in_a_row += 1,
                None => answered_in_a_row = 0,
            }
            if answered_in_a_row >= 2 {
                answered_in_a_row = 0;
                tracing::info!(
                    connection = %name,
                    server = ?first,
                    "the first NATS server is back: reconnecting to it"
                );
                if let Err(error) = client.force_reconnect().await {
                    tracing::warn!(connection = %name, %error, "reconnecting to the first NATS server");
                }
            }
        }
    })
}

/// The `server_id` in the INFO the server at `addr` sends first, or None if it does not
/// answer within `timeout`.
pub(crate) async fn server_id_at(addr: &ServerAddr, timeout: Duration) -> Option<String> {
    let read = async {
        let mut stream = TcpStream::connect((addr.host(), addr.port())).await.ok()?;
        let mut line = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !line.ends_with(b"\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || line.len() + n > MAX_INFO {
                return None;
            }
            line.extend_from_slice(&buf[..n]);
        }
        server_id_of_info(&line)
    };
    tokio::time::timeout(timeout, read).await.ok().flatten()
}

/// `INFO {"server_id":"…",…}\r\n` → the server id.
fn server_id_of_info(line: &[u8]) -> Option<String> {
    let json = std::str::from_utf8(line)
        .ok()?
        .strip_prefix("INFO ")?
        .trim();
    let info: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(info.get("server_id")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_id_of_an_info_line() {
        let line = br#"INFO {"server_id":"NABC","server_name":"a","version":"2.11.0","port":4222}"#;
        let mut with_end = line.to_vec();
        with_end.extend_from_slice(b"\r\n");
        assert_eq!(server_id_of_info(&with_end).as_deref(), Some("NABC"));
        assert_eq!(
            server_id_of_info(b"-ERR 'Authorization Violation'\r\n"),
            None
        );
        assert_eq!(server_id_of_info(b"INFO {not json}\r\n"), None);
        assert_eq!(server_id_of_info(b"INFO {\"port\":4222}\r\n"), None);
    }
}
