//! SIPp caller → edge → call-control → edge → SIPp callee through `calanque run`: the callee
//! (SIPp `call_uas.xml`) is registered on its port first, then SIPp `call_uac.xml` places 20
//! calls (407 challenge, MD5 credentials, 180, 200, ACK, BYE), every one of which must succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use test_phone::Phone;
use testkit::sipp::{self, SipUser, SippRun};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CALLS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sipp_calls_through_the_all_in_one_all_succeed() {
    let data = tempfile::tempdir().unwrap();
    let sip: SocketAddr = format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap();
    let rest = format!("127.0.0.1:{}", testkit::process::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_calanque"))
        .args([
            "run",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            &format!("udp:{sip}"),
            "--rest",
            &rest,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Then dial") {
                return;
            }
        }
        panic!("calanque run exited before its banner");
    })
    .await
    .expect("calanque run started");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let users: Vec<(String, String)> =
        std::fs::read_to_string(data.path().join("demo-credentials.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_owned(), f[2].to_owned())
            })
            .collect();
    let (caller, callee) = (&users[0], &users[1]);

    // Register the callee's port, then free it for SIPp's UAS, which answers every call.
    let mut registrant = Phone::new(&callee.0, &callee.1, "calanque", sip).await;
    registrant.register().await;
    let uas_port = registrant.local.port();
    drop(registrant);
    let uas = SippRun::new(sipp::scenario("call_uas.xml"), sip)
        .local_port(uas_port)
        .calls(CALLS)
        .timeout(Duration::from_secs(40))
        .spawn()
        .unwrap();

    let csv = data.path().join("caller.csv");
    sipp::write_users_csv(
        &csv,
        &[SipUser {
            username: caller.0.clone(),
            domain: "calanque".into(),
            password: caller.1.clone(),
        }],
    )
    .unwrap();
    let callee_number = callee.0.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        SippRun::new(sipp::scenario("call_uac.xml"), sip)
            .inf(&csv)
            .service(&callee_number)
            .auth_uri(&format!("{callee_number}@calanque"))
            .calls(CALLS)
            .rate(10, 1000)
            .timeout(Duration::from_secs(30))
            .arg("-recv_timeout")
            .arg("5000")
            .arg("-default_behaviors")
            .arg("all,-abortunexp")
            .expect(CALLS, 0)
    })
    .await
    .unwrap();
    let outcome = outcome.unwrap_or_else(|e| panic!("SIPp calls through calanque run: {e}"));
    eprintln!("{}", outcome.report());
    let uas = tokio::task::spawn_blocking(move || uas.wait())
        .await
        .unwrap();
    let uas = uas.unwrap_or_else(|e| panic!("the SIPp callee: {e}"));
    assert_eq!(uas.successful_calls, CALLS, "{}", uas.report());
}
