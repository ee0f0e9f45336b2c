//! Cluster mode for tests: every service as its own process (the binaries an operator
//! deploys: directory, media, SIP edge, call-control replicas) over a real etcd and a real
//! nats-server, each serving its telemetry endpoints on a free port. Shared by the cluster
//! tests; each test file uses the parts it needs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sip_msg::{Request, StatusCode};
use store::Store;
use store::etcd::{EtcdConfig, EtcdStore};
use test_phone::Phone;
use testkit::etcd::EtcdServer;
use testkit::nats::NatsServer;
use tokio::process::{Child, Command};

pub(crate) const REALM: &str = "calanque.test";

/// A binary beside this package's (`cargo test --workspace` builds them all).
pub(crate) fn sibling(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_calanque")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --workspace` builds it (or cargo build --bins)",
        path.display()
    );
    path
}

/// Starts a service and waits (at most 30 s) until it logs `ready_line` (its readiness line:
/// subscriptions made, caches loaded).
pub(crate) async fn spawn_ready(binary: &str, args: &[String], ready_line: &str) -> Child {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = Command::new(sibling(binary))
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("CQ_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        .env("NO_COLOR", "1")
        // Spans leave within 100 ms instead of the batch exporter's default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        // The directory's admin API needs a token (unused here; only the directory reads it).
        .env(
            "CALANQUE_DIRECTORY_TOKEN",
            "cluster-test-admin-token-0123456789abcdef",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(ready_line) {
                return;
            }
        }
        panic!("{binary} exited before logging {ready_line:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("{binary} did not log {ready_line:?} within 30 s"));
    // Keep reading so the process never blocks on a full pipe; `CQ_TEST_ECHO=1` echoes the
    // lines on stderr, named by the first argument (an instance name), to investigate a failure.
    let echo = std::env::var_os("CQ_TEST_ECHO").is_some();
    let name = format!("{binary} {}", args.get(1).map_or("", String::as_str));
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[{name}] {line}");
            }
        }
    });
    child
}

/// OPTIONS until the edge answers (it is up, with its directory and location loaded).
pub(crate) async fn wait_for_edge(edge: SocketAddr) {
    let probe = Phone::new("probe", "-", REALM, edge).await;
    for i in 0..100 {
        let options = format!(
            "OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-probe{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{REALM}>;tag=p\r\nTo: <sip:{REALM}>\r\n\
             Call-ID: probe-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            probe.local
        );
        probe.send(options.as_bytes()).await;
        if probe.next(Duration::from_millis(200)).await.is_some() {
            return;
        }
    }
    panic!("the edge process never answered OPTIONS");
}

/// An RTP packet (version 2, PCMU, 20 ms) with this sequence number and SSRC.
pub(crate) fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend(std::iter::repeat_n(0xD5u8, 160));
    packet
}

pub(crate) fn sdp_for(port: u16) -> String {
    format!(
        "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
}

pub(crate) fn sdp_port(body: &[u8]) -> u16 {
    let text = std::str::from_utf8(body).unwrap();
    let m = text.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    m.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub(crate) fn free_local() -> SocketAddr {
    format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap()
}

/// What a test cluster runs with.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClusterOptions {
    /// Site S-1 relays its media (calls are anchored on the media process).
    pub(crate) relay: bool,
    /// OTLP/HTTP collector every service exports its spans to.
    pub(crate) otlp: Option<String>,
    /// The datacenter of the media and edge processes (`--datacenter`); None: not said.
    pub(crate) datacenter: Option<String>,
}

/// etcd, NATS, the small city's directory, and the directory, media and edge processes.
/// Call-control replicas are started with [`Cluster::call_control`].
pub(crate) struct Cluster {
    pub(crate) etcd: EtcdServer,
    pub(crate) nats: NatsServer,
    pub(crate) store: Arc<dyn Store>,
    /// The edge's SIP address (UDP).
    pub(crate) sip: SocketAddr,
    /// The media relay's RTP port range.
    pub(crate) relay_ports: RangeInclusive<u16>,
    /// Each service's telemetry endpoints, by service name.
    pub(crate) telemetry: Vec<(String, SocketAddr)>,
    options: ClusterOptions,
    /// The processes started, by service name (the edge's is "edge", the media's "media").
    children: Vec<(String, Child)>,
}

impl Cluster {
    pub(crate) async fn start(options: ClusterOptions) -> Cluster {
        let etcd = tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .unwrap()
            .unwrap();
        let nats = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .unwrap()
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EtcdStore::connect(&EtcdConfig::new([etcd.endpoint()]))
                .await
                .unwrap(),
        );
        test_phone::directory::seed_small_city(&store, REALM).await;
        if options.relay {
            test_phone::directory::set_media_policy(&store, "S-1", true).await;
        }
        let first_port = 24_000 + 2 * (testkit::process::free_port() % 500);
        let mut cluster = Cluster {
            sip: free_local(),
            relay_ports: first_port..=first_port + 99,
            telemetry: Vec::new(),
            children: Vec::new(),
            etcd,
            nats,
            store,
            options,
        };
        let directory = cluster
            .spawn(
                "directory",
                "calanque-directory",
                &[
                    "--store",
                    &format!("etcd:{}", cluster.etcd.endpoint()),
                    "--bus",
                    &cluster.nats.url(),
                    "--rest",
                    &free_local().to_string(),
                    "--grpc",
                    &free_local().to_string(),
                    "--realm",
                    REALM,
                ],
                "REST API listening",
            )
            .await;
        cluster.children.push(("directory".into(), directory));
        let datacenter = cluster.options.datacenter.clone().unwrap_or_default();
        let media = cluster
            .media("media-k", &datacenter, cluster.relay_ports.clone())
            .await;
        cluster.children.push(("media".into(), media));
        let edge = cluster.edge("edge-k", &datacenter, cluster.sip).await;
        cluster.children.push(("edge".into(), edge));
        cluster
    }

    /// Starts a media relay replica on `ports` in `datacenter` ("" for none).
    pub(crate) async fn media(
        &mut self,
        media_id: &str,
        datacenter: &str,
        ports: RangeInclusive<u16>,
    ) -> Child {
        let nats = self.nats.url();
        let ports = format!("{}-{}", ports.start(), ports.end());
        self.spawn(
            media_id,
            "calanque-media",
            &[
                "--nats",
                &nats,
                "--media-id",
                media_id,
                "--ports",
                &ports,
                "--datacenter",
                datacenter,
                "--heartbeat-ms",
                "200",
            ],
            "media relay ready",
        )
        .await
    }

    /// Starts a SIP edge listening on UDP `sip` in `datacenter` ("" for none).
    pub(crate) async fn edge(&mut self, edge_id: &str, datacenter: &str, sip: SocketAddr) -> Child {
        let (etcd, nats) = (self.etcd.endpoint(), self.nats.url());
        self.spawn(
            edge_id,
            "calanque-sip-edge",
            &[
                "--edge-id",
                edge_id,
                "--listen",
                &format!("udp:{sip}"),
                "--etcd",
                &etcd,
                "--nats",
                &nats,
                "--realm",
                REALM,
                "--nonce-key",
                &"22".repeat(32),
                "--datacenter",
                datacenter,
                "--heartbeat-ms",
                "200",
            ],
            "sip-edge ready",
        )
        .await
    }

    /// The process of service `name` started by [`Cluster::start`] ("edge", "media"), taken
    /// out of the cluster's keeping (to kill it).
    pub(crate) fn take(&mut self, name: &str) -> Child {
        let index = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} process"));
        self.children.remove(index).1
    }

    /// Starts `binary` with `args` plus its telemetry flags, waiting for `ready_line`.
    async fn spawn(
        &mut self,
        service: &str,
        binary: &str,
        args: &[&str],
        ready_line: &str,
    ) -> Child {
        let endpoints = free_local();
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--telemetry-listen".to_owned(), endpoints.to_string()]);
        if let Some(otlp) = &self.options.otlp {
            args.extend(["--otlp-endpoint".to_owned(), otlp.clone()]);
        }
        let child = spawn_ready(binary, &args, ready_line).await;
        self.telemetry.push((service.to_owned(), endpoints));
        child
    }

    /// Starts a call-control replica named `instance` (anchoring media when the cluster
    /// relays); the caller keeps the process (kill it to test a takeover).
    pub(crate) async fn call_control(&mut self, instance: &str) -> Child {
        let datacenter = self.options.datacenter.clone().unwrap_or_default();
        self.call_control_in(instance, &datacenter).await
    }

    /// A call-control replica in `datacenter` ("" for none).
    pub(crate) async fn call_control_in(&mut self, instance: &str, datacenter: &str) -> Child {
        let (etcd, nats) = (self.etcd.endpoint(), self.nats.url());
        let mut args = vec![
            "--instance",
            instance,
            "--datacenter",
            datacenter,
            "--etcd",
            &etcd,
            "--nats",
            &nats,
            "--domain",
            REALM,
        ];
        if self.options.relay {
            args.push("--media-relay");
        }
        self.spawn(
            instance,
            "calanque-call-control",
            &args,
            "call-control ready",
        )
        .await
    }

    /// The telemetry address of `service`.
    pub(crate) fn endpoints(&self, service: &str) -> SocketAddr {
        self.telemetry
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, address)| *address)
            .unwrap_or_else(|| panic!("no telemetry endpoints for {service}"))
    }

    /// Alice calls 1002 with `offer` until Bob's phone rings (call-control's location cache
    /// may not have seen Bob's binding yet: 480 and retry). Returns the Call-ID used and the
    /// INVITE Bob received.
    pub(crate) async fn call_until_ringing(
        &self,
        alice: &mut Phone,
        bob: &mut Phone,
        prefix: &str,
        offer: &str,
    ) -> (String, Request) {
        for attempt in 0..20 {
            let call_id = format!("{prefix}-{attempt}@alice");
            alice.call_with_sdp("1002", &call_id, offer).await;
            let outcome = tokio::time::timeout(Duration::from_secs(3), async {
                tokio::select! {
                    request = bob.request() => Ok(request),
                    response = alice.response(false) => Err(response),
                }
            })
            .await
            .expect("neither the callee rang nor the caller got an answer");
            match outcome {
                Ok(invite) => return (call_id, invite),
                Err(response) => {
                    assert_eq!(response.status, StatusCode::TEMPORARILY_UNAVAILABLE);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        panic!("the callee never rang");
    }
}
