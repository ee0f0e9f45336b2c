//! A real single-member etcd (Debian's `etcd-server`) on free loopback ports, for the store's
//! integration tests: start, kill and restart on the same ports and data (outage tests), and
//! read its Prometheus metrics (to see server-side state such as open watches). With
//! [`EtcdServer::start_tls`] the client port speaks only mutual TLS.
//!
//! The data directory is a temporary directory of its own, outside the `ManagedProcess`'s,
//! so that it survives a kill and a restart and goes when the guard drops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{HarnessError, ManagedProcess, free_port};
use crate::tls::TestPki;

const PROGRAM: &str = "etcd";
/// Bound on etcd listening after a spawn, and then on it reporting healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd member; killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    process: Option<ManagedProcess>,
    data: tempfile::TempDir,
    client: SocketAddr,
    peer: SocketAddr,
    /// Set by [`EtcdServer::start_tls`]; boxed so that a plain server stays small (tests
    /// keep it in enums next to lighter backends).
    tls: Option<Box<ServerTls>>,
}

/// What a TLS member is started with: its certificate, and the CA its clients must present
/// a certificate from. /health and /metrics move to a plain HTTP port of their own.
#[derive(Debug, Clone)]
struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    ca_file: PathBuf,
    metrics: SocketAddr,
}

/// The `--max-txn-ops` every calanque etcd member runs with (ADR 0005): the reference city's
/// 24,662 entries are imported in one transaction.
pub const MAX_TXN_OPS: usize = 50_000;

impl EtcdServer {
    /// Starts etcd on free loopback ports with a fresh data directory and waits until it
    /// reports healthy (it has elected itself leader).
    ///
    /// Flags the product depends on: `--max-txn-ops 50000` and `--max-request-bytes 32 MiB`
    /// so that an atomic bulk import fits in one transaction (ADR 0005). The heartbeat and
    /// election timeout are shortened so that it is ready sooner and its minimum lease TTL
    /// (1.5 × the election timeout, rounded up to whole seconds) is 1 s.
    pub fn start() -> Result<EtcdServer, HarnessError> {
        Self::start_with(None)
    }

    /// Like [`EtcdServer::start`], with an `https://` client URL served with `pki`'s server
    /// certificate and `--client-cert-auth` (clients need a certificate signed by `pki`'s
    /// CA). `pki` must outlive the server (a restart reads the files again).
    pub fn start_tls(pki: &TestPki) -> Result<EtcdServer, HarnessError> {
        Self::start_with(Some(pki))
    }

    fn start_with(pki: Option<&TestPki>) -> Result<EtcdServer, HarnessError> {
        // A free port is free when chosen, not when etcd binds it: tests running in parallel
        // may take it in between. That start is retried on other ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(pki) {
                Err(error)
                    if attempt < 3 && error.to_string().contains("address already in use") =>
                {
                    continue;
                }
                result => return result,
            }
        }
    }

    fn start_once(pki: Option<&TestPki>) -> Result<EtcdServer, HarnessError> {
        let data = tempfile::Builder::new()
            .prefix("calanque-etcd-data-")
            .tempdir()
            .map_err(|source| HarnessError::Spawn {
                program: PROGRAM.to_owned(),
                source,
            })?;
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = EtcdServer {
            process: None,
            data,
            client: loopback(free_port()),
            peer: loopback(free_port()),
            tls: pki.map(|pki| {
                Box::new(ServerTls {
                    cert_file: pki.server_cert_file(),
                    key_file: pki.server_key_file(),
                    ca_file: pki.ca_file(),
                    metrics: loopback(free_port()),
                })
            }),
        };
        server.spawn()?;
        Ok(server)
    }

    fn args(&self) -> Vec<String> {
        let client = self.endpoint();
        let peer = format!("http://{}", self.peer);
        let data_dir = self.data.path().join("member-data");
        let mut args: Vec<String> = [
            "--name",
            "calanque-test",
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("calanque-test={peer}"),
            "--initial-cluster-state",
            "new",
            "--max-txn-ops",
            &MAX_TXN_OPS.to_string(),
            "--max-request-bytes",
            "33554432",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.to_string_lossy().into_owned();
            args.extend([
                "--cert-file".to_owned(),
                path(&tls.cert_file),
                "--key-file".to_owned(),
                path(&tls.key_file),
                "--trusted-ca-file".to_owned(),
                path(&tls.ca_file),
                "--client-cert-auth".to_owned(),
                "--listen-metrics-urls".to_owned(),
                format!("http://{}", tls.metrics),
            ]);
        }
        args
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut listening = vec![self.client, self.peer];
        listening.extend(self.tls.as_ref().map(|tls| tls.metrics));
        let process = ManagedProcess::start(PROGRAM, &self.args(), &listening, START_TIMEOUT)?;
        self.process = Some(process);
        self.wait_healthy()
    }

    /// Polls `/health` until etcd answers `"health":"true"` (a leader and a working quorum
    /// read), within [`START_TIMEOUT`].
    fn wait_healthy(&self) -> Result<(), HarnessError> {
        let step = Duration::from_millis(50);
        let rounds = START_TIMEOUT.as_millis() / step.as_millis();
        for _ in 0..rounds {
            if self
                .http_get("/health")
                .is_ok_and(|body| body.contains("\"health\":\"true\""))
            {
                return Ok(());
            }
            std::thread::sleep(step);
        }
        Err(HarnessError::NotReady {
            program: PROGRAM.to_owned(),
            timeout: START_TIMEOUT,
            log_tail: self.log_tail(40),
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` when started with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    /// Where etcd keeps its data (kept across [`EtcdServer::restart`]).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Kills etcd (SIGKILL, like a crash), keeping its data and ports; idempotent.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills etcd if it runs, then starts it again on the same ports and data directory and
    /// waits until it is healthy.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.spawn()
    }

    /// The etcd process's id while it runs (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|process| process.pid())
    }

    /// True while the process started by the last start or restart runs.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The sum of every series of a Prometheus metric on `/metrics` (e.g.
    /// `etcd_debugging_mvcc_watcher_total`); `None` when the metric is absent or etcd does not
    /// answer.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = self.http_get("/metrics").ok()?;
        let mut found = None;
        for line in body.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            found = Some(found.unwrap_or(0.0) + value);
        }
        found
    }

    /// The last lines of etcd's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET on the client port (etcd serves /health and /metrics there), or
    /// on the metrics port of a TLS member.
    fn http_get(&self, path: &str) -> std::io::Result<String> {
        let timeout = Duration::from_secs(2);
        let address = self.tls.as_ref().map_or(self.client, |tls| tls.metrics);
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Kill before the data directory is removed (fields drop after this).
        self.kill();
    }
}
