//! `make e2e-ha`: every failure scenario (`calanque_e2e::scenarios::ALL`) on a fresh harness
//! each, the table printed and written to `e2e/REPORT.md`. Exits non-zero when a scenario
//! misses a target (the report says which and by how much).

// The harness measures on the wall clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use anyhow::Result;
use calanque_e2e::scenarios::{self, Load};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Runs the two-datacenter failure scenarios and writes the report")]
struct Args {
    /// Where the report goes.
    #[arg(long, default_value = "e2e/REPORT.md")]
    report: std::path::PathBuf,
    /// How often a year each failure is assumed to happen, for the projected downtime.
    #[arg(long, default_value_t = 4)]
    per_year: u32,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// A description of the machine, for the report.
    #[arg(long, default_value = "this machine")]
    machine: String,
}

fn main() -> Result<()> {
    calanque_e2e::init_binary_logs();
    let args = Args::parse();
    let started = Instant::now();
    let load = Load::default();
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for scenario in scenarios::ALL.iter().filter(|s| {
        args.only
            .as_ref()
            .is_none_or(|o| s.name.contains(o.as_str()))
    }) {
        eprintln!("cq-e2e-ha: {} …", scenario.name);
        let outcome = match scenarios::run(scenario, &load) {
            Ok(outcome) => outcome,
            Err(e) => {
                // The next scenarios still run: each has its own harness.
                eprintln!("cq-e2e-ha: {}: could not be measured: {e:#}", scenario.name);
                errors.push(format!("- {}: could not be measured: {e:#}", scenario.name));
                continue;
            }
        };
        eprintln!(
            "cq-e2e-ha: {}: recovery {:?}, {} dropped, {} failed set-ups, {} lost, {}",
            outcome.name,
            outcome.recovery,
            outcome.summary.dropped.len(),
            outcome.summary.failed.len(),
            outcome.registrations_lost,
            if outcome.passed() { "pass" } else { "FAIL" }
        );
        outcomes.push(outcome);
    }
    let mut report = scenarios::report(&outcomes, args.per_year, &args.machine);
    if !errors.is_empty() {
        report.push_str("\nScenarios that could not be measured:\n\n");
        report.push_str(&errors.join("\n"));
        report.push('\n');
    }
    report.push_str(&format!(
        "\nAll scenarios took {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    {
        use std::io::Write as _;
        std::io::stdout().lock().write_all(report.as_bytes())?;
    }
    std::fs::write(&args.report, &report)?;
    if errors.is_empty() && outcomes.iter().all(scenarios::Outcome::passed) {
        Ok(())
    } else {
        anyhow::bail!(
            "a scenario missed its targets: see {}",
            args.report.display()
        )
    }
}
