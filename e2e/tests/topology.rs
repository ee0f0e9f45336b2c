//! The harness's smoke test: two datacenters and a witness in network namespaces, real
//! 3-member etcd and NATS clusters, every service in both datacenters, the failover
//! controllers. Both edges answer SIP from the phones' site, the failover state starts on
//! dc-a, dc-a isolated (its processes alive, its links cut) → the state moves to dc-b within
//! 30 s, and the teardown leaves no namespace and no process behind.
//!
//! Needs root (network namespaces) and the workspace's binaries built (`cargo test
//! --workspace` builds them; or `cargo build --bins`). Fails loudly, never skips.

// The harness waits and measures on the wall clock: it is the I/O shell around real processes,
// with no sans-IO core in it.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use calanque_e2e::netns::{self, DC_A, DC_B, SITE_1};
use calanque_e2e::{Harness, HarnessOptions};

/// The target for a lost datacenter.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

#[test]
fn two_datacenters_come_up_and_an_isolated_dc_a_fails_over_to_dc_b() -> Result<()> {
    calanque_e2e::init_test_logs();
    let started = Instant::now();
    let mut harness = Harness::start(HarnessOptions::default())?;
    let bring_up = started.elapsed();

    // Phones at site 1 reach both datacenters' edges.
    for datacenter in harness.datacenters() {
        let took = harness.wait_sip_ok(SITE_1, datacenter.sip(), Duration::from_secs(10))?;
        tracing::info!(datacenter = %datacenter.name, ?took, "edge answers OPTIONS from site-1");
    }

    let (initial, took) =
        harness.wait_failover(DC_B, Duration::from_secs(20), "created on dc-a", |s| {
            s.active == "dc-a" && !s.moving
        })?;
    tracing::info!(?initial, ?took, "failover state created");
    ensure!(initial.epoch == 1, "initial state {initial:?}");

    // dc-a lost to everyone, its processes still running (they lose etcd quorum, NATS routes
    // and their phones).
    let lost = Instant::now();
    harness.topology_mut().isolate(DC_A)?;
    let (moved, _) =
        harness.wait_failover(DC_B, FAILOVER_LIMIT, "on dc-b", |s| s.active == "dc-b")?;
    let failover = lost.elapsed();
    ensure!(
        moved.epoch > initial.epoch,
        "moved without a new epoch: {moved:?}"
    );
    // The move is written by whichever controller leads on the majority side: dc-b's or the
    // witness's. Never by dc-a's, which has lost etcd's quorum.
    let isolated_controller = harness.datacenter("dc-a")?.failover_name();
    ensure!(
        moved.writer != isolated_controller,
        "the isolated side's controller wrote the move: {moved:?}"
    );
    let dc_a = harness.datacenter("dc-a")?.sip();
    ensure!(
        harness.sip_options(SITE_1, dc_a).is_err(),
        "dc-a's edge still answers site-1 while isolated"
    );
    let dc_b = harness.datacenter("dc-b")?.sip();
    ensure!(harness.sip_options(SITE_1, dc_b)? == 200, "dc-b's edge");

    let report = harness.shutdown().context("teardown")?;
    let left = netns::leftover_namespaces()?;
    ensure!(left.is_empty(), "namespaces left: {left:?}");
    eprintln!(
        "cq-e2e smoke: bring-up {:.1} s, failover after isolating dc-a {:.1} s (state epoch {}), \
         teardown {:.1} s ({} processes), total {:.1} s; logs in {}",
        bring_up.as_secs_f64(),
        failover.as_secs_f64(),
        moved.epoch,
        report.took.as_secs_f64(),
        report.pids_killed,
        started.elapsed().as_secs_f64(),
        report.run_dir.display()
    );
    Ok(())
}
