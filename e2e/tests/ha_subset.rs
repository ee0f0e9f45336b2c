//! The short subset of the failure scenarios that `make test` runs (`make e2e-ha` runs them
//! all): a SIP edge killed, and a whole datacenter lost, each under a fleet of phones
//! calling. Targets (issue 8): new calls again within 5 s and 30 s, no established call
//! dropped, no registration lost or duplicated, one leader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use calanque_e2e::scenarios::{self, Load};

fn check(scenario: &scenarios::Scenario) {
    let outcome = scenarios::run(scenario, &Load::default()).unwrap();
    eprintln!(
        "{}",
        scenarios::report(std::slice::from_ref(&outcome), 4, "make test")
    );
    assert!(
        outcome.summary.answered > 10,
        "the fleet made calls: {outcome:?}"
    );
    assert!(
        outcome.passed(),
        "{} missed a target: {outcome:?}",
        scenario.name
    );
}

#[test]
fn a_killed_edge_costs_no_call_and_no_registration() {
    check(&scenarios::SUBSET[0]);
}

#[test]
fn a_lost_datacenter_costs_no_established_call_and_no_registration() {
    check(&scenarios::SUBSET[1]);
}
