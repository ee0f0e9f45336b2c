//! The harness's eyes and hands inside the namespaces: run with `ip netns exec <ns> cq-e2e …`
//! by [`calanque_e2e::Harness::probe`], since the test process itself (in the host's namespace)
//! cannot reach 10.77.0.x. Each command prints one result on stdout and exits non-zero, with
//! the reason on stderr, when it cannot get one.

// The harness waits and measures on the wall clock: it is the I/O shell around real processes,
// with no sans-IO core in it.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calanque_e2e::FailoverView;
use clap::{Parser, Subcommand};
use store::Store;
use store::etcd::{EtcdConfig, EtcdStore};

#[derive(Debug, Parser)]
#[command(about = "Probes run inside the e2e harness's network namespaces")]
struct Args {
    #[command(subcommand)]
    command: Probe,
}

#[derive(Debug, Subcommand)]
enum Probe {
    /// GET an http:// URL (HTTP/1.0); prints the body; fails on no answer or a non-2xx status.
    HttpGet {
        url: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// SIP OPTIONS over UDP to IP:PORT, retransmitted every 200 ms; prints the status code.
    SipOptions {
        target: SocketAddr,
        #[arg(long, default_value = "calanque.test")]
        realm: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Writes the small test city (test_phone::directory::seed_small_city) into etcd, and
    /// `--fleet` more phones (`add_phones`); `--relay` anchors the site's calls on the relays.
    Seed {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
        #[arg(long)]
        realm: String,
        #[arg(long, default_value_t = 0)]
        fleet: u32,
        #[arg(long)]
        relay: bool,
    },
    /// Runs a phone fleet (test_phone::fleet) against the servers, primary first; prints one
    /// JSON event per line and exits when its duration is over.
    Fleet {
        /// SIP servers, IP:PORT, comma-separated, primary first.
        #[arg(long, value_delimiter = ',')]
        servers: Vec<SocketAddr>,
        #[arg(long, default_value = "calanque.test")]
        realm: String,
        /// The address the phones bind (this namespace's).
        #[arg(long)]
        bind_ip: std::net::IpAddr,
        /// How many phones (the first `count` that `seed --fleet` wrote); pairs call.
        #[arg(long)]
        phones: u32,
        #[arg(long, default_value_t = 60)]
        register_expires: u32,
        #[arg(long, default_value_t = 500)]
        keepalive_ms: u64,
        #[arg(long, default_value_t = 2)]
        misses: u32,
        #[arg(long, default_value_t = 4000)]
        hold_ms: u64,
        #[arg(long, default_value_t = 500)]
        pause_ms: u64,
        #[arg(long)]
        duration_s: u64,
    },
    /// Prints, as JSON, how many live bindings each of the first `phones` fleet phones has
    /// (with `--storm`, storm phones).
    Bindings {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
        #[arg(long, default_value = "calanque.test")]
        realm: String,
        #[arg(long)]
        phones: u32,
        /// Count the first `phones` storm phones (`seed-storm`) instead, from one listing of
        /// the bindings (thousands of AORs, one read each would outlast the probe's bound);
        /// prints a `calanque_e2e::storm::BindingCount`.
        #[arg(long)]
        storm: bool,
    },
    /// Writes `phones` registration-storm phones into etcd
    /// (test_phone::directory::add_storm_phones: site S-2, devices s20000, s20001, …).
    SeedStorm {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
        #[arg(long)]
        realm: String,
        #[arg(long)]
        phones: u32,
    },
    /// A registration storm (calanque_e2e::storm::drive): the first `phones` storm phones
    /// register with the server at once, each from its own socket on one of `sources`; prints
    /// the report as one JSON line.
    Storm {
        /// The SIP server, IP:PORT (UDP).
        #[arg(long)]
        server: SocketAddr,
        #[arg(long, default_value = "calanque.test")]
        realm: String,
        #[arg(long)]
        phones: u32,
        /// Addresses of this namespace the phones bind, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        sources: Vec<std::net::IpAddr>,
        /// Phones started per second; 0: all at once.
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Phones not registered this long after the start are lost.
        #[arg(long, default_value_t = 60)]
        deadline_s: u64,
    },
    /// Prints the failover state as JSON (`null` when there is none yet).
    FailoverState {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Probe::HttpGet { url, timeout_ms } => {
            let body = http_get(&url, Duration::from_millis(timeout_ms))?;
            write_stdout(&body)
        }
        Probe::SipOptions {
            target,
            realm,
            timeout_ms,
        } => {
            let status = sip_options(target, &realm, Duration::from_millis(timeout_ms))?;
            write_stdout(&status.to_string())
        }
        Probe::Seed {
            etcd,
            realm,
            fleet,
            relay,
        } => runtime()?.block_on(async {
            let store = connect(&etcd).await?;
            test_phone::directory::seed_small_city(&store, &realm).await;
            if fleet > 0 {
                test_phone::directory::add_phones(&store, &realm, fleet).await;
            }
            if relay {
                test_phone::directory::set_media_policy(&store, "S-1", true).await;
            }
            write_stdout("seeded")
        }),
        Probe::Fleet {
            servers,
            realm,
            bind_ip,
            phones,
            register_expires,
            keepalive_ms,
            misses,
            hold_ms,
            pause_ms,
            duration_s,
        } => {
            let config = test_phone::fleet::FleetConfig {
                servers,
                realm,
                bind_ip,
                phones: test_phone::directory::fleet_phones(phones),
                register_expires,
                keepalive: Duration::from_millis(keepalive_ms),
                misses,
                hold: Duration::from_millis(hold_ms),
                pause: Duration::from_millis(pause_ms),
                duration: Duration::from_secs(duration_s),
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(async {
                    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
                    let fleet = tokio::spawn(test_phone::fleet::run(config, events));
                    // Each event as it happens: a killed fleet still leaves what it saw.
                    while let Some((t, event)) = received.recv().await {
                        write_stdout(&event.to_json(t))?;
                    }
                    fleet.await?;
                    Ok(())
                })
        }
        Probe::Bindings {
            etcd,
            realm,
            phones,
            storm: true,
        } => runtime()?.block_on(async {
            let store = connect(&etcd).await?;
            // The listing `start` makes is one consistent read of every binding.
            let location =
                location::LocationService::start(store, location::LocationConfig::default())
                    .await?;
            let now_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut missing = Vec::new();
            let mut duplicated = Vec::new();
            for (user, _, _) in test_phone::directory::storm_phones(phones) {
                match location
                    .lookup(&format!("sip:{user}@{realm}"), now_unix)
                    .len()
                {
                    0 => missing.push(user),
                    1 => {}
                    _ => duplicated.push(user),
                }
            }
            // Counts and the first few names, not one entry per phone: the harness reads a
            // probe's output only once it exited, and more than a pipe's 64 KiB would block it.
            let count = calanque_e2e::storm::BindingCount {
                phones,
                missing: missing.len(),
                duplicated: duplicated.len(),
                missing_sample: missing.into_iter().take(20).collect(),
                duplicated_sample: duplicated.into_iter().take(20).collect(),
            };
            write_stdout(&serde_json::to_string(&count)?)
        }),
        Probe::Bindings {
            etcd,
            realm,
            phones,
            storm: false,
        } => runtime()?.block_on(async {
            let store = connect(&etcd).await?;
            let location =
                location::LocationService::start(store, location::LocationConfig::default())
                    .await?;
            let mut counts = serde_json::Map::new();
            for (user, _, _) in test_phone::directory::fleet_phones(phones) {
                let aor = format!("sip:{user}@{realm}");
                let now_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs();
                let live = location
                    .fresh(&aor)
                    .await?
                    .iter()
                    .filter(|b| b.binding.expires_at > now_unix)
                    .count();
                counts.insert(user, live.into());
            }
            write_stdout(&serde_json::Value::Object(counts).to_string())
        }),
        Probe::SeedStorm {
            etcd,
            realm,
            phones,
        } => runtime()?.block_on(async {
            let store = connect(&etcd).await?;
            if phones > test_phone::directory::STORM_MAX {
                bail!("at most {} storm phones", test_phone::directory::STORM_MAX);
            }
            test_phone::directory::add_storm_phones(&store, &realm, phones).await;
            write_stdout("seeded")
        }),
        Probe::Storm {
            server,
            realm,
            phones,
            sources,
            rate,
            deadline_s,
        } => {
            let config = calanque_e2e::storm::StormConfig {
                server,
                realm,
                phones: test_phone::directory::storm_phones(phones)
                    .into_iter()
                    .map(|(user, password, _)| (user, password))
                    .collect(),
                sources,
                rate,
                deadline: Duration::from_secs(deadline_s),
            };
            let report = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(calanque_e2e::storm::drive(config))?;
            write_stdout(&serde_json::to_string(&report)?)
        }
        Probe::FailoverState { etcd } => runtime()?.block_on(async {
            let store = connect(&etcd).await?;
            let view = match store.get(failover::state::STATE_KEY).await? {
                None => None,
                Some(kv) => {
                    let state = failover::FailoverState::decode(&kv.value)?;
                    Some(FailoverView {
                        failed: state.failed.iter().map(|f| f.datacenter.clone()).collect(),
                        moving: state.is_moving(),
                        active: state.active,
                        epoch: state.epoch,
                        fencing: state.fencing_revision,
                        writer: state.writer,
                        revision: kv.mod_revision,
                    })
                }
            };
            write_stdout(&serde_json::to_string(&view)?)
        }),
    }
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn connect(endpoints: &str) -> Result<Arc<dyn Store>> {
    let mut config = EtcdConfig::new(endpoints.split(','));
    // A probe must answer within the harness's patience even when a member is cut off.
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(3);
    let store = EtcdStore::connect(&config)
        .await
        .with_context(|| format!("connecting to etcd at {endpoints}"))?;
    Ok(Arc::new(store))
}

fn http_get(url: &str, timeout: Duration) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let address = authority
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP header in the answer")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status in the answer")?;
    if !(200..300).contains(&status) {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body.to_owned())
}

fn sip_options(target: SocketAddr, realm: &str, timeout: Duration) -> Result<u16> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // Connecting picks the interface address the edge must answer to (our Via).
    socket.connect(target)?;
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let started = Instant::now();
    let call_id = format!("cq-e2e-{}-{}", std::process::id(), local.port());
    let request = format!(
        "OPTIONS sip:{realm} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{realm}>;tag=cqe2e\r\nTo: <sip:{realm}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buffer = [0u8; 4096];
    while started.elapsed() < timeout {
        // ECONNREFUSED from an earlier send (nothing listening) is not fatal: retry.
        let _ = socket.send(request.as_bytes());
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buffer[..n]);
                let status = text
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|rest| rest.get(..3))
                    .and_then(|code| code.parse().ok());
                match status {
                    // A provisional answer: the final one follows.
                    Some(code) if code >= 200 => return Ok(code),
                    _ => continue,
                }
            }
            Err(_) => continue,
        }
    }
    bail!("no SIP answer from {target} within {timeout:?}")
}
