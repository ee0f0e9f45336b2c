//! The SIPp scenarios of `e2e/sipp/` against a real Kamailio registrar (the reference peer):
//! each passes for the right reason, and mutated runs show that their checks can fail. The
//! same scenarios later run against calanque's SIP edge.
//!
//! Kamailio is installed by `make deps` (scripts/ensure-deps.sh); without it these tests fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::kamailio::{self, Kamailio, KamailioOptions};
use testkit::sipp::{self, SipUser, SippRun, Transport};

/// A Kamailio with 40 users and 2 children.
fn kamailio() -> Kamailio {
    assert!(
        kamailio::binary().is_some(),
        "kamailio is not installed: run `make deps` (apt-get install kamailio)"
    );
    let options = KamailioOptions {
        users: 40,
        children: 2,
        shm_mb: 32,
        ..KamailioOptions::default()
    };
    Kamailio::start_with(options).expect("kamailio starts")
}

/// An injection file of Kamailio's users `ids` in a fresh directory (kept alive by the caller).
fn users(kam: &Kamailio, ids: impl IntoIterator<Item = usize>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.csv");
    let list: Vec<SipUser> = ids.into_iter().map(|i| kam.user(i)).collect();
    sipp::write_users_csv(&path, &list).expect("users.csv");
    (dir, path)
}

/// A run of `scenario` against Kamailio, digest uri = the domain, bounded at 20 s.
fn run(kam: &Kamailio, scenario: &str, csv: Option<&Path>) -> SippRun {
    let mut run = SippRun::new(sipp::scenario(scenario), kam.addr())
        .auth_uri(kam.realm())
        .timeout(Duration::from_secs(20));
    if let Some(csv) = csv {
        run = run.inf(csv);
    }
    run
}

#[test]
fn register_md5_over_udp_lists_the_contact() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=3);
    let outcome = run(&kam, "register_md5.xml", Some(&csv))
        .calls(3)
        .expect(3, 0)
        .expect("three registrations");
    let messages = outcome.messages();
    assert_eq!(messages.matches("SIP/2.0 401").count(), 3, "{messages}");
    assert_eq!(messages.matches("SIP/2.0 200").count(), 3, "{messages}");
}

#[test]
fn register_md5_over_tcp() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=3);
    let outcome = run(&kam, "register_md5.xml", Some(&csv))
        .transport(Transport::Tcp)
        .calls(3)
        .expect(3, 0)
        .expect("three registrations over TCP");
    assert!(outcome.messages().contains("transport=TCP"));
}

#[test]
fn reregister_with_same_call_id_and_higher_cseq() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=2);
    run(&kam, "reregister.xml", Some(&csv))
        .calls(2)
        .expect(2, 0)
        .expect("registrations refreshed");
}

#[test]
fn unregister_one_contact_and_star() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=2);
    run(&kam, "unregister.xml", Some(&csv))
        .calls(2)
        .expect(2, 0)
        .expect("bindings removed by Contact + Expires: 0");
    let (_d, csv) = users(&kam, 3..=4);
    run(&kam, "unregister_star.xml", Some(&csv))
        .calls(2)
        .expect(2, 0)
        .expect("bindings removed by Contact: * + Expires: 0");
}

#[test]
fn unregister_fails_when_the_binding_stays() {
    let kam = kamailio();
    // The same scenario whose "removal" asks for 120 s: the 200 still lists the binding.
    let text = std::fs::read_to_string(sipp::scenario("unregister.xml")).expect("scenario");
    assert_eq!(text.matches("Expires: 0\n").count(), 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let mutated = dir.path().join("unregister_mutated.xml");
    std::fs::write(&mutated, text.replace("Expires: 0\n", "Expires: 120\n")).expect("write");
    let (_d, csv) = users(&kam, 1..=1);
    let outcome = SippRun::new(&mutated, kam.addr())
        .auth_uri(kam.realm())
        .inf(&csv)
        .timeout(Duration::from_secs(20))
        .expect(0, 1)
        .expect("the check rejects a 200 that still lists the Contact");
    assert_eq!(
        outcome.stat_count("FailedRegexpShouldntMatch(C)"),
        1,
        "{}",
        outcome.report()
    );
}

#[test]
fn wrong_password_is_challenged_again() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=2);
    let outcome = run(&kam, "wrong_password.xml", Some(&csv))
        .calls(2)
        .expect(2, 0)
        .expect("401 with a fresh challenge");
    assert_eq!(
        outcome.logs.matches("challenged again with").count(),
        2,
        "{}",
        outcome.logs
    );
    assert!(!outcome.messages().contains("SIP/2.0 200"));
}

#[test]
fn wrong_password_scenario_fails_when_the_password_is_right() {
    let kam = kamailio();
    // field4 (the "wrong" credentials) made right: Kamailio answers 200, which must fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("right.csv");
    let u = kam.user(1);
    let auth = format!(
        "[authentication username={} password={}]",
        u.username, u.password
    );
    let row = vec![
        u.username.clone(),
        u.domain.clone(),
        u.password.clone(),
        auth.clone(),
        auth,
    ];
    sipp::write_rows_csv(&csv, &[row]).expect("csv");
    let outcome = run(&kam, "wrong_password.xml", Some(&csv))
        .expect(0, 1)
        .expect("a 200 to the wrong-password REGISTER fails the call");
    assert_eq!(
        outcome.stat_count("FailedUnexpectedMessage(C)"),
        1,
        "{}",
        outcome.report()
    );
}

#[test]
fn interval_too_brief_gets_423_with_min_expires_then_registers() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=1);
    let outcome = run(&kam, "interval_too_brief.xml", Some(&csv))
        .expect(1, 0)
        .expect("423, then 200 at Min-Expires");
    let messages = outcome.messages();
    assert!(messages.contains("SIP/2.0 423"), "{messages}");
    assert!(messages.contains("Min-Expires: 60"), "{messages}");
    assert!(
        messages.lines().any(|l| l.trim_end() == "Expires: 60"),
        "retried with Min-Expires: {messages}"
    );
}

#[test]
fn several_contacts_are_all_listed() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=2);
    run(&kam, "several_contacts.xml", Some(&csv))
        .calls(2)
        .expect(2, 0)
        .expect("both contacts listed");
}

#[test]
fn contact_checks_fail_when_another_binding_exists() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 5..=5);
    run(&kam, "register_md5.xml", Some(&csv))
        .expect(1, 0)
        .expect("first binding");
    // Same user from another port: the 200 lists two bindings, not exactly ours.
    let outcome = run(&kam, "register_md5.xml", Some(&csv))
        .expect(0, 1)
        .expect("two bindings fail the exactly-one check");
    assert_eq!(
        outcome.stat_count("FailedRegexpDoesntMatch(C)"),
        1,
        "{}",
        outcome.report()
    );
    // Two more contacts: three listed, not exactly the two of the call.
    let outcome = run(&kam, "several_contacts.xml", Some(&csv))
        .expect(0, 1)
        .expect("four bindings fail the exactly-two check");
    assert_eq!(
        outcome.stat_count("FailedRegexpDoesntMatch(C)"),
        1,
        "{}",
        outcome.report()
    );
}

#[test]
fn options_keepalive_three_times() {
    let kam = kamailio();
    let outcome = run(&kam, "options_keepalive.xml", None)
        .calls(2)
        .expect(2, 0)
        .expect("OPTIONS answered");
    assert_eq!(outcome.messages().matches("SIP/2.0 200").count(), 6);
}

#[test]
fn flood_options_at_a_rate_then_keepalive_still_answered() {
    let kam = kamailio();
    let outcome = run(&kam, "flood_options.xml", None)
        .rate(400, 1000)
        .limit(200)
        .calls(600)
        .trace_msg(false)
        .expect(600, 0)
        .expect("flood sent");
    assert!(
        outcome.elapsed >= Duration::from_millis(1000),
        "{:?}",
        outcome.elapsed
    );
    run(&kam, "options_keepalive.xml", None)
        .expect(1, 0)
        .expect("still answering");
}

#[test]
fn register_sha256_scenario_loads_and_sends_the_injected_authorization() {
    let kam = kamailio();
    // Kamailio here has no SHA-256 credentials: it challenges, which fails the call; the run
    // shows the scenario is valid SIPp and sends the injected header as is.
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("sha.csv");
    let auth = format!(
        "Authorization: Digest username=\"user1\",realm=\"{r}\",nonce=\"n\",uri=\"sip:{r}\",\
         response=\"{z}\",algorithm=SHA-256",
        r = kam.realm(),
        z = "0".repeat(64)
    );
    sipp::write_rows_csv(
        &csv,
        &[vec!["user1".into(), kam.realm().into(), auth.clone()]],
    )
    .expect("csv");
    let outcome = run(&kam, "register_sha256.xml", Some(&csv))
        .expect(0, 1)
        .expect("scenario runs; Kamailio rejects the credentials");
    assert!(outcome.messages().contains(&auth), "{}", outcome.messages());
}

#[test]
fn register_bench_scenario_small_run() {
    let kam = kamailio();
    let (_d, csv) = users(&kam, 1..=40);
    let outcome = run(&kam, "register_bench.xml", Some(&csv))
        .rate(200, 1000)
        .limit(50)
        .calls(40)
        .trace_msg(false)
        .expect(40, 0)
        .expect("40 registrations");
    assert!(outcome.calls_per_second() > 0.0);
}
