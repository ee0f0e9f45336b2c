//! The registration storm's driver on a healthy harness (no fault): 500 storm phones
//! registering at dc-a's edge at once from site-1, each with digest authentication, must all
//! be registered, each with exactly one live binding in etcd. `make e2e-ha` runs the storm
//! after dc-a's return (`calanque_e2e::storm::apply_storm`); this keeps the driver covered in
//! `make test`.
//!
//! `CQ_E2E_STORM_PHONES=N` changes the number of phones (what the storm's size was measured
//! with). The whole fault under a calling fleet is a scenario of `make e2e-ha`
//! (`./target/debug/cq-e2e-ha --only storm`).
//!
//! Needs root (network namespaces) and the workspace's binaries built (`cargo test
//! --workspace` builds them; or `cargo build --bins`). Fails loudly, never skips.

// The harness waits and measures on the wall clock: it is the I/O shell around real processes,
// with no sans-IO core in it.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use calanque_e2e::netns::SITE_1;
use calanque_e2e::storm;
use calanque_e2e::{Harness, HarnessOptions};

/// The storm's size in `make test`: enough to exercise the driver, short enough for the suite.
const PHONES: u32 = 500;

fn phones() -> u32 {
    std::env::var("CQ_E2E_STORM_PHONES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PHONES)
}

fn sleep_watch(_: &Harness, pause: Duration) {
    std::thread::sleep(pause);
}

#[test]
fn a_storm_of_phones_registering_at_once_all_register_once() -> Result<()> {
    calanque_e2e::init_test_logs();
    let started = Instant::now();
    let mut harness = Harness::start(HarnessOptions::default())?;
    let bring_up = started.elapsed();
    let dc_a = harness.datacenter("dc-a")?.sip();
    harness.wait_sip_ok(SITE_1, dc_a, Duration::from_secs(10))?;
    let result = storm::storm(&mut harness, "dc-a", phones(), &mut sleep_watch)?;
    eprintln!(
        "cq-e2e storm: {} (bring-up {:.1} s, total {:.1} s)",
        result.summary(),
        bring_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    ensure!(result.passed(), "the storm lost phones: {result:?}");
    harness.shutdown().context("teardown")?;
    Ok(())
}
