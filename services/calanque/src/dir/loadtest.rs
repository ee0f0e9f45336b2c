//! `calanque dir loadtest`: what the registrar does on every REGISTER — a directory GET of a
//! device over the bus — from many tasks at once, with latency percentiles and errors.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bus::{Bus, BusHeaders, NatsBus, NatsOptions};
use bytes::Bytes;
use directory::import::parse_yaml;
use directory::model::Entry;
use prost::Message;
use proto::{subjects, v1};
use tokio::time::Instant;

use crate::cli::LoadtestArgs;
use crate::output::Percentiles;

/// The devices to look up: (device id, SIP username).
pub(super) fn devices_of(yaml: &str) -> anyhow::Result<Vec<(String, String)>> {
    let set = parse_yaml(yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(set
        .entries
        .into_iter()
        .filter_map(|imported| match imported.entry {
            Entry::Device(d) => {
                Some((d.id.as_str().to_owned(), d.sip_username.as_str().to_owned()))
            }
            _ => None,
        })
        .collect())
}

/// The request for one device.
pub(super) fn request_for(device_id: &str, sip_username: &str) -> v1::GetRequest {
    v1::GetRequest {
        kind: v1::EntryKind::Device as i32,
        id: device_id.to_owned(),
        sip_username: sip_username.to_owned(),
        ..v1::GetRequest::default()
    }
}

#[derive(Debug, Default)]
struct Outcome {
    latencies_us: Vec<u64>,
    errors: Vec<String>,
}

pub(super) async fn run(args: &LoadtestArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.requests == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    let yaml = std::fs::read_to_string(&args.usernames_from)
        .with_context(|| format!("cannot read {}", args.usernames_from.display()))?;
    let devices =
        Arc::new(devices_of(&yaml).with_context(|| {
            format!("{} is not a directory file", args.usernames_from.display())
        })?);
    if devices.is_empty() {
        bail!("{} lists no device", args.usernames_from.display());
    }
    let servers = args.nats.split(',').map(|s| s.trim().to_owned()).collect();
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(NatsOptions::new("calanque-loadtest", servers))
            .await
            .with_context(|| format!("cannot connect to NATS at {}", args.nats))?,
    );
    let timeout = Duration::from_millis(args.timeout_ms);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (bus, devices, next) = (bus.clone(), devices.clone(), next.clone());
        let total = args.requests;
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return outcome;
                }
                let (id, username) = &devices[n % devices.len()];
                let request = request_for(id, username);
                let mut headers = BusHeaders::new();
                headers.insert(subjects::TYPE_HEADER, subjects::types::GET_REQUEST);
                let sent = Instant::now();
                let reply = bus
                    .request(
                        subjects::DIRECTORY_GET,
                        headers,
                        Bytes::from(request.encode_to_vec()),
                        timeout,
                    )
                    .await;
                let elapsed = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                match reply.map_err(|e| e.to_string()).and_then(|m| check(&m, id)) {
                    Ok(()) => outcome.latencies_us.push(elapsed),
                    Err(error) => outcome.errors.push(error),
                }
            }
        }));
    }
    let mut total = Outcome::default();
    for worker in workers {
        let outcome = worker.await.context("a load test task failed")?;
        total.latencies_us.extend(outcome.latencies_us);
        total.errors.extend(outcome.errors);
    }
    let wall = started.elapsed();
    let ok = total.latencies_us.len();
    writeln!(
        out,
        "requests {} ok {ok} errors {} concurrency {} wall {:.2} s rate {:.0}/s",
        args.requests,
        total.errors.len(),
        args.concurrency,
        wall.as_secs_f64(),
        args.requests as f64 / wall.as_secs_f64().max(1e-9)
    )?;
    if let Some(p) = Percentiles::of(&mut total.latencies_us) {
        writeln!(
            out,
            "latency p50 {:.3} ms p95 {:.3} ms p99 {:.3} ms max {:.3} ms",
            p.p50 as f64 / 1000.0,
            p.p95 as f64 / 1000.0,
            p.p99 as f64 / 1000.0,
            p.max as f64 / 1000.0
        )?;
    }
    if let Some(first) = total.errors.first() {
        writeln!(out, "first error: {first}")?;
        bail!(
            "{} of {} requests failed",
            total.errors.len(),
            args.requests
        );
    }
    Ok(())
}

/// A reply is good when it is a `GetResponse` holding the device asked for.
fn check(reply: &bus::BusMessage, device_id: &str) -> Result<(), String> {
    if reply.headers.get(subjects::TYPE_HEADER) == Some(subjects::types::BUS_ERROR) {
        let error = v1::BusError::decode(reply.payload.as_ref()).unwrap_or_default();
        return Err(format!("directory error: {}", error.message));
    }
    let response = v1::GetResponse::decode(reply.payload.as_ref())
        .map_err(|e| format!("not a GetResponse: {e}"))?;
    match response.entry.and_then(|e| e.kind) {
        Some(v1::entry::Kind::Device(device)) if device.id == device_id => Ok(()),
        other => Err(format!(
            "unexpected answer for device {device_id}: {other:?}"
        )),
    }
}
