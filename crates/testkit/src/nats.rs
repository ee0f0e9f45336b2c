//! A real `nats-server` for integration tests: one per test, on a free loopback port, with
//! JetStream enabled and its store in the process's temporary directory. It can be killed and
//! restarted on the same port (and the same JetStream store) to test outages. With
//! [`NatsServer::start_tls`] it accepts only TLS clients presenting a certificate.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::process::{HarnessError, ManagedProcess, free_port};
use crate::tls::TestPki;

const PROGRAM: &str = "nats-server";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `nats-server`; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    /// Where JetStream keeps its data: inside the first process's directory, which lives as
    /// long as this guard so that a restart finds the same store.
    store_dir: PathBuf,
    process: ManagedProcess,
    /// Killed processes kept for their directories (the first one holds the store).
    retired: Vec<ManagedProcess>,
    /// The TLS flags (empty for a plain server), repeated on a restart.
    tls_args: Vec<String>,
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p <free port> -js -sd <tmp>/jetstream` and waits
    /// until it accepts connections.
    pub fn start() -> Result<NatsServer, HarnessError> {
        Self::start_with(Vec::new())
    }

    /// Like [`NatsServer::start`], serving TLS with `pki`'s server certificate and requiring
    /// a client certificate signed by `pki`'s CA (`--tlsverify`, the flags' form of a config
    /// file's `tls { cert_file, key_file, ca_file, verify: true }`). `pki` must outlive the
    /// server.
    pub fn start_tls(pki: &TestPki) -> Result<NatsServer, HarnessError> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        Self::start_with(vec![
            "--tlsverify".to_owned(),
            "--tlscert".to_owned(),
            path(pki.server_cert_file()),
            "--tlskey".to_owned(),
            path(pki.server_key_file()),
            "--tlscacert".to_owned(),
            path(pki.ca_file()),
        ])
    }

    fn start_with(tls_args: Vec<String>) -> Result<NatsServer, HarnessError> {
        let port = free_port();
        // Relative to the working directory, which is the process's fresh temporary directory.
        let process = spawn(port, "jetstream", &tls_args)?;
        let store_dir = process.dir().join("jetstream");
        Ok(NatsServer {
            port,
            store_dir,
            process,
            retired: Vec::new(),
            tls_args,
        })
    }

    /// `nats://127.0.0.1:<port>`, or `tls://127.0.0.1:<port>` when started with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls_args.is_empty() {
            "nats"
        } else {
            "tls"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the server (SIGKILL), as a crash or an outage would; idempotent.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the server if it runs, then starts a new one on the same port with the same
    /// JetStream store, and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.kill();
        let store = self.store_dir.to_string_lossy().into_owned();
        let process = spawn(self.port, &store, &self.tls_args)?;
        let old = std::mem::replace(&mut self.process, process);
        self.retired.push(old);
        Ok(())
    }

    /// The last lines of the running server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

fn spawn(port: u16, store_dir: &str, tls_args: &[String]) -> Result<ManagedProcess, HarnessError> {
    let mut args: Vec<String> = [
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-js",
        "-sd",
        store_dir,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend_from_slice(tls_args);
    let ready = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    ManagedProcess::start(PROGRAM, &args, &[ready], READY_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn starts_kills_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start().expect("nats-server starts");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        assert!(TcpStream::connect(addr).is_ok());
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        assert!(server.store_dir.is_dir(), "JetStream store created");
        let first_pid = server.pid();
        server.kill();
        assert!(TcpStream::connect(addr).is_err(), "port closed after kill");
        server.restart().expect("nats-server restarts");
        assert!(TcpStream::connect(addr).is_ok());
        assert_ne!(server.pid(), first_pid);
    }
}
