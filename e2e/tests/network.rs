//! The harness's parts without the services (a few seconds): a cut between two locations
//! silences only that pair and heals; isolate/rejoin; a process is stopped, killed and
//! restarted on the same arguments; a panicking test still leaves no namespace or process.

// The test waits on the wall clock; nothing here is a sans-IO core.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use anyhow::{Result, ensure};
use calanque_e2e::cluster::Member;
use calanque_e2e::netns::{self, DC_A, DC_B, SITE_1, WITNESS};
use calanque_e2e::{Harness, HarnessOptions};

/// nats-server alone in dc-b: something to reach (its monitoring port) and to signal.
fn lone_nats(harness: &mut Harness) -> Result<Member> {
    let member = harness
        .members()
        .iter()
        .find(|m| m.namespace == DC_B)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no dc-b member"))?;
    let spec = member.nats_spec(
        &harness.binaries().nats_server,
        std::slice::from_ref(&member),
    );
    harness.spawn(spec)?.wait_ready(Duration::from_secs(10))?;
    Ok(member)
}

fn reaches(harness: &Harness, from: &str, member: &Member) -> bool {
    harness
        .probe(
            from,
            &[
                "http-get".to_owned(),
                member.nats_monitor_url("/varz"),
                "--timeout-ms".to_owned(),
                "500".to_owned(),
            ],
        )
        .is_ok()
}

#[test]
fn cuts_isolation_and_process_control() -> Result<()> {
    let mut harness = Harness::new(HarnessOptions::default())?;
    let nats = lone_nats(&mut harness)?;
    for from in [DC_A, WITNESS, SITE_1, DC_B] {
        ensure!(reaches(&harness, from, &nats), "{from} cannot reach dc-b");
    }

    harness.topology_mut().cut(DC_A, DC_B)?;
    ensure!(
        !reaches(&harness, DC_A, &nats),
        "dc-a reaches dc-b through the cut"
    );
    ensure!(
        reaches(&harness, SITE_1, &nats),
        "the cut silenced site-1 too"
    );
    harness.topology_mut().heal(DC_B, DC_A)?;
    ensure!(
        reaches(&harness, DC_A, &nats),
        "healed, dc-a still cannot reach dc-b"
    );

    harness.topology_mut().isolate(DC_B)?;
    for from in [DC_A, WITNESS, SITE_1] {
        ensure!(
            !reaches(&harness, from, &nats),
            "{from} reaches an isolated dc-b"
        );
    }
    // Inside the isolated location, loopback and its own address still work.
    ensure!(reaches(&harness, DC_B, &nats), "dc-b cannot reach itself");
    harness.topology_mut().rejoin(DC_B)?;
    ensure!(
        reaches(&harness, WITNESS, &nats),
        "rejoined, still unreachable"
    );
    ensure!(harness.topology().cuts().next().is_none(), "cuts left");

    let process = harness.process(&nats.nats_process())?;
    let first = process.pid();
    ensure!(
        process.stop(Duration::from_secs(5)).is_some(),
        "nats-server ignored SIGTERM"
    );
    ensure!(!process.is_running(), "stopped but running");
    process.restart(Duration::from_secs(10))?;
    ensure!(
        process.pid() != first && process.is_running(),
        "not restarted"
    );
    ensure!(
        process.logged("Server is ready"),
        "the restarted run's ready line"
    );
    harness.kill(&nats.nats_process())?;
    ensure!(!reaches(&harness, DC_B, &nats), "killed, still answering");
    harness.restart(&nats.nats_process())?;
    ensure!(reaches(&harness, SITE_1, &nats), "restarted, not answering");

    harness.shutdown()?;
    Ok(())
}

#[test]
fn a_panicking_test_leaves_nothing_behind() -> Result<()> {
    let pids = std::thread::spawn(|| -> Vec<i32> {
        let mut harness = Harness::new(HarnessOptions::default()).expect("harness");
        lone_nats(&mut harness).expect("nats-server");
        let pids = netns::namespace_pids(DC_B);
        assert!(!pids.is_empty(), "nothing runs in dc-b");
        // Unwinding drops the harness; the pids go out through the panic payload.
        std::panic::panic_any(pids);
    })
    .join()
    .expect_err("the thread panicked")
    .downcast::<Vec<i32>>()
    .map_err(|_| anyhow::anyhow!("unexpected panic payload"))?;
    // Another test may hold the lock and its namespaces by now: only ours must be gone.
    for pid in *pids {
        ensure!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived the panic"
        );
    }
    Ok(())
}
