//! `calanque run`: every service in one process — the directory (REST on localhost), the SIP
//! edge, call-control — on the in-process bus and the embedded store under `--data-dir`,
//! with a demo directory on first start. Media goes directly between the phones (the demo
//! sites' policy); the relay joins when call-control anchors media.

mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bus::{Bus, InProcessBus};
use directory::api::BearerToken;
use sip_edge::transport::ListenSpec;
use store::Store;
use store::embedded::EmbeddedStore;

/// What `calanque run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    pub listen: Vec<ListenSpec>,
    pub rest: SocketAddr,
    pub realm: String,
    /// Exempt from flood bans.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Challenged, in order.
    pub digest_algorithms: Vec<sip_core::digest::Algorithm>,
    /// Per-source request rate and burst before a ban (the edge's defaults when `None`).
    pub rate_limit: Option<u32>,
    pub rate_burst: Option<u32>,
    /// Run the media relay in-process at this IP.
    pub media_ip: Option<std::net::IpAddr>,
    /// The relay's port range.
    pub media_ports: (u16, u16),
    /// How long callees ring before the caller gets 480.
    pub ring_timeout: Duration,
    /// Logs, traces and the telemetry endpoints.
    pub telemetry: telemetry::TelemetryArgs,
}

/// Runs until SIGINT/SIGTERM, then drains and stops.
pub async fn run(options: RunOptions, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    let telemetry = telemetry::ServiceTelemetry::start(
        "all-in-one",
        &options.telemetry,
        &["bus", "store", "started"],
    )
    .await
    .context("starting telemetry")?;
    let store: Arc<dyn Store> = telemetry.store(Arc::new(
        EmbeddedStore::open(options.data_dir.join("calanque.redb"))
            .await
            .context("opening the embedded store")?,
    ));
    let bus: Arc<dyn Bus> = telemetry.bus(Arc::new(InProcessBus::new(Default::default())));
    let token = secret_file(&options.data_dir.join("admin-token"), 16)?;
    let nonce_key = secret_file(&options.data_dir.join("nonce-key"), 32)?;

    let phones = demo::seed_if_empty(&store, &options.realm).await?;
    if !phones.is_empty() {
        let mut text = String::from("# calanque demo phones: extension, site, password\n");
        for phone in &phones {
            text.push_str(&format!(
                "{} {} {}\n",
                phone.extension, phone.site, phone.password
            ));
        }
        write_private(&options.data_dir.join("demo-credentials.txt"), &text)?;
    }

    let mut directory_config = directory::Config::new(vec![BearerToken::new(&token)]);
    directory_config.rest = Some(options.rest);
    directory_config.realm = options.realm.clone();
    let directory = directory::service::start(directory_config, store.clone(), bus.clone())
        .await
        .context("starting the directory")?;

    let mut edge_config =
        sip_edge::EdgeConfig::new("all-in-one", &options.realm, key32(&nonce_key)?);
    edge_config.listen = options.listen.clone();
    edge_config.protection.trusted_networks = options.trusted_networks.clone();
    if let Some(rate) = options.rate_limit {
        edge_config.protection.rate_per_second = rate;
    }
    if let Some(burst) = options.rate_burst {
        edge_config.protection.burst = burst;
    }
    if !options.digest_algorithms.is_empty() {
        edge_config.digest_algorithms = options.digest_algorithms.clone();
    }
    edge_config.metrics = Some(telemetry.metrics.clone());
    let edge = sip_edge::start(edge_config, store.clone(), bus.clone())
        .await
        .context("starting the SIP edge")?;
    // The relay is served on the in-process bus and reached through a bus client, as in
    // cluster mode: the same code path, and its dead-media events reach call-control.
    let (media, _media_server): (Option<Arc<dyn media::MediaControl>>, _) = match options.media_ip {
        Some(ip) => {
            let (relay, events) = media::start(media::MediaConfig {
                bind_ip: ip,
                port_first: options.media_ports.0,
                port_last: options.media_ports.1,
                metrics: Some(telemetry::MediaMetrics::register(&telemetry.metrics)),
                ..Default::default()
            })
            .context("starting the media relay")?;
            let server = media::bus::serve(Arc::new(relay), events, "all-in-one", "", bus.clone())
                .await
                .context("serving the media relay on the bus")?;
            let client = media::MediaClient::new(bus.clone(), Duration::from_secs(2));
            (Some(Arc::new(client)), Some(AbortOnDrop(server)))
        }
        None => (None, None),
    };
    let call_control = call_control::service::start_instrumented(
        call_control::service::CallControlConfig {
            instance: "all-in-one".into(),
            datacenter: String::new(),
            domain: options.realm.clone(),
            ring_timeout: options.ring_timeout,
            cdr_file: Some(options.data_dir.join("cdr.jsonl")),
            media,
        },
        store.clone(),
        bus.clone(),
        Some(&telemetry.metrics),
    )
    .await
    .context("starting call-control")?;
    telemetry.readiness.set("started", true);

    let mut shutdown = Box::pin(shutdown_signal()?);
    print_banner(out, &options, &edge, &phones, telemetry.endpoints)?;
    shutdown.as_mut().await;
    writeln!(out, "stopping: draining calls in flight…")?;
    telemetry.readiness.set("started", false);
    drop(call_control);
    edge.drain().await;
    directory.shutdown().await;
    Ok(())
}

fn print_banner(
    out: &mut dyn std::io::Write,
    options: &RunOptions,
    edge: &sip_edge::EdgeHandle,
    phones: &[demo::DemoPhone],
    telemetry: Option<SocketAddr>,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "calanque is running (all-in-one, data in {})",
        options.data_dir.display()
    )?;
    for spec in edge.bound() {
        writeln!(out, "  SIP           {spec}")?;
    }
    writeln!(
        out,
        "  directory API http://{} (token in {})",
        options.rest,
        options.data_dir.join("admin-token").display()
    )?;
    if let Some(address) = telemetry {
        writeln!(
            out,
            "  telemetry     http://{address}/metrics (and /healthz, /readyz)"
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Point a softphone (baresip, Linphone, a desk phone) at this machine:"
    )?;
    writeln!(
        out,
        "  server/domain  <this machine's address> (port {})",
        edge.bound().first().map(|s| s.addr.port()).unwrap_or(5060)
    )?;
    writeln!(
        out,
        "  username       the extension number, realm \"{}\"",
        options.realm
    )?;
    if phones.is_empty() {
        writeln!(
            out,
            "  credentials    see {}",
            options.data_dir.join("demo-credentials.txt").display()
        )?;
    } else {
        writeln!(
            out,
            "  demo phones (also in {}):",
            options.data_dir.join("demo-credentials.txt").display()
        )?;
        for phone in phones {
            writeln!(
                out,
                "    extension {}  password {}  (site {})",
                phone.extension, phone.password, phone.site
            )?;
        }
    }
    writeln!(
        out,
        "Then dial another extension (e.g. 1002). Ctrl-C stops calanque."
    )?;
    out.flush()?;
    Ok(())
}

/// Stops a spawned task when dropped (the relay's bus server ends with `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A random secret kept in `path` (created on first start, mode 0600), as hex.
fn secret_file(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let secret: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    let secret = hex::encode(secret);
    write_private(path, &secret)?;
    Ok(secret)
}

fn key32(hex_key: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_key).context("the nonce key file is not hex")?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("the nonce key file must hold 32 bytes"))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The handlers are installed before this returns, so a
/// signal sent right after the banner is not missed.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
