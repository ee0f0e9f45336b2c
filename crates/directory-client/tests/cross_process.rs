//! A change reaches a watching cache in another process in under a second: a real etcd, the
//! `dircache-probe` binary as a separate process (a `DirectoryCache` printing each revision it
//! reaches with its wall clock), and this test writing through the store in the layout the
//! directory service writes. Prints the median and the max of 20 changes.

#![allow(clippy::unwrap_used, clippy::print_stdout)]
// Both processes read the same host's wall clock: that is the measurement.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use directory::import::{CityParams, generate_city};
use directory::model::{CallCategory, Entry, UserId};
use directory::storage::{encode, entry_key};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Op, Revision, Store};
use testkit::etcd::EtcdServer;

/// The figure asserted (the design target is "changes live in seconds"; a cache sees them in
/// well under one).
const PROPAGATION_LIMIT_MS: u128 = 1_000;
const CHANGES: usize = 20;
/// Bound on any one line awaited from the probe.
const LINE_WAIT: Duration = Duration::from_secs(20);

struct Probe {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Probe {
    fn start(endpoint: &str) -> Probe {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dircache-probe"))
            .args(["--etcd", endpoint])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn dircache-probe");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Probe {
            child,
            stdin,
            lines,
        }
    }

    /// The next line satisfying `wanted` (others are skipped), within [`LINE_WAIT`].
    fn next_line(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + LINE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} from the probe in {LINE_WAIT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the probe exited waiting for {what}")
                }
            }
        }
    }

    /// Waits for `rev <n> <ms>` with n ≥ `revision`; returns the probe's ms.
    fn reached(&self, revision: Revision) -> u128 {
        let line = self.next_line(&format!("revision {revision}"), |line| {
            line.strip_prefix("rev ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<Revision>().ok())
                .is_some_and(|n| n >= revision)
        });
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn ask(&mut self, lookup: &str) -> String {
        writeln!(self.stdin, "{lookup}").unwrap();
        self.stdin.flush().unwrap();
        self.next_line(&format!("an answer to {lookup:?}"), |line| {
            line.starts_with("found ") || line == "none" || line.starts_with("error ")
        })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_a_cache_in_another_process_in_under_a_second() {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
    let store = EtcdStore::connect(&EtcdConfig::new([server.endpoint()]))
        .await
        .unwrap();
    let city = generate_city(&CityParams {
        sites: 5,
        users: 200,
        devices: 100,
        hunt_groups: 2,
        seed: 3,
    })
    .unwrap();
    let ops = city
        .iter()
        .map(|e| Op::Put {
            key: entry_key(&e.key()),
            value: encode(e),
            lease: None,
        })
        .collect();
    assert!(store.txn(Vec::new(), ops).await.unwrap().succeeded);

    let mut probe = Probe::start(&server.endpoint());
    let ready = probe.next_line("ready", |line| line.starts_with("ready "));
    assert_eq!(
        ready.split(' ').nth(2),
        Some(city.len().to_string().as_str()),
        "{ready}"
    );

    let template = city
        .iter()
        .find_map(|e| match e {
            Entry::User(u) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    let mut cos = city
        .iter()
        .find_map(|e| match e {
            Entry::ClassOfService(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    let mut latencies = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        // Alternately a new user and a changed class of service.
        let entry = if i % 2 == 0 {
            let mut user = template.clone();
            user.id = UserId::parse(&format!("U-XP-{i:02}")).unwrap();
            Entry::User(user)
        } else {
            if !cos.allowed.remove(&CallCategory::International) {
                cos.allowed.insert(CallCategory::International);
            }
            Entry::ClassOfService(cos.clone())
        };
        let before = now_ms();
        let revision = store
            .put(&entry_key(&entry.key()), encode(&entry), None)
            .await
            .unwrap();
        let seen = probe.reached(revision);
        latencies.push(seen.saturating_sub(before));
    }

    // The probe's cache holds what was written, not only a revision number.
    assert!(probe.ask("user U-XP-18").starts_with("found user U-XP-18 "));
    let allowed = probe.ask(&format!("cos {}", cos.name.as_str()));
    let expected: Vec<&str> = cos.allowed.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        allowed,
        format!("found cos {} {}", cos.name.as_str(), expected.join(","))
    );

    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let median = sorted[CHANGES / 2];
    let max = sorted[CHANGES - 1];
    println!(
        "cross-process propagation over {CHANGES} changes (etcd → cache in another process): \
         median {median} ms, max {max} ms; all: {latencies:?}"
    );
    assert!(
        max < PROPAGATION_LIMIT_MS,
        "a change took {max} ms to reach the other process (limit {PROPAGATION_LIMIT_MS} ms)"
    );
}
