//! `dircache-probe --etcd http://127.0.0.1:2379`: a directory cache in a process of its own,
//! for the cross-process propagation test and for looking at what a service's cache sees.
//!
//! Prints `ready <revision> <entries>` once loaded, then `rev <revision> <ms since epoch>`
//! each time the cache's revision moves. Reads lookups from stdin, one per line, and answers
//! each on one line: `device <sip username>`, `extension <number>`, `user <id>`,
//! `cos <name>` → `found <kind> <id> <detail>` or `none`. Exits when stdin closes.
//!
//! An `https://` endpoint takes its TLS files from the services' environment variables
//! `CALANQUE_ETCD_CA_FILE`, `CALANQUE_ETCD_CERT_FILE` and `CALANQUE_ETCD_KEY_FILE` (ADR 0019).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::sync::Arc;

use directory_client::DirectoryCache;
use store::etcd::{ClientIdentity, EtcdConfig, EtcdStore, EtcdTls};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let endpoint = match (args.next().as_deref(), args.next()) {
        (Some("--etcd"), Some(endpoint)) => endpoint,
        _ => return Err("usage: dircache-probe --etcd <http://host:port>".into()),
    };
    let store = EtcdStore::connect(&EtcdConfig::new([endpoint]).with_tls(tls_from_env()?)).await?;
    let cache = DirectoryCache::start(Arc::new(store)).await?;
    let mut changes = cache.changes();
    say(&format!("ready {} {}", cache.revision(), cache.len()));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err("the cache stopped".into());
                }
                let revision = *changes.borrow_and_update();
                say(&format!("rev {revision} {}", now_ms()));
            }
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                say(&lookup(&cache, line.trim()));
            }
        }
    }
}

fn lookup(cache: &DirectoryCache, line: &str) -> String {
    let (what, key) = line.split_once(' ').unwrap_or((line, ""));
    let found = match what {
        "device" => cache
            .device_by_sip_username(key)
            .map(|d| format!("device {} {}", d.id.as_str(), d.ha1.md5.as_str())),
        "extension" => cache.extension(key).map(|e| {
            format!(
                "extension {} {}",
                e.number.as_str(),
                e.class_of_service.as_str()
            )
        }),
        "user" => cache
            .user(key)
            .map(|u| format!("user {} {}", u.id.as_str(), u.display_name.as_str())),
        "cos" => cache.class_of_service(key).map(|c| {
            let allowed: Vec<&str> = c.allowed.iter().map(|a| a.as_str()).collect();
            format!("cos {} {}", c.name.as_str(), allowed.join(","))
        }),
        _ => return format!("error unknown lookup {what:?}"),
    };
    found.map_or_else(|| "none".to_owned(), |f| format!("found {f}"))
}

/// The services' etcd TLS variables (a probe has no clap to share their flags).
fn tls_from_env() -> Result<EtcdTls, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
    let identity = match (
        var("CALANQUE_ETCD_CERT_FILE"),
        var("CALANQUE_ETCD_KEY_FILE"),
    ) {
        (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        _ => return Err("CALANQUE_ETCD_CERT_FILE and CALANQUE_ETCD_KEY_FILE go together".into()),
    };
    Ok(EtcdTls {
        ca_file: var("CALANQUE_ETCD_CA_FILE"),
        identity,
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the parent went away; the next stdin read ends the probe.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Wall clock in ms since the epoch: the parent compares it with its own clock (same host).
#[allow(clippy::disallowed_methods)] // an edge binary: the wall clock is what it reports
fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
