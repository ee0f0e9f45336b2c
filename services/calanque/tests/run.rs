//! `calanque run`, the all-in-one, as a newcomer uses it: the binary starts with an empty data
//! directory, creates the demo directory and prints the phones' credentials; two phones
//! register with them and call each other through the edge and call-control; SIGTERM stops it
//! cleanly; a second start keeps the directory and the same credentials still work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sip_msg::{Method, StatusCode};
use test_phone::Phone;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const REALM: &str = "calanque";

/// Starts `calanque run` and waits for its banner; returns the child and the banner.
async fn start(data: &Path, sip: SocketAddr, rest: SocketAddr) -> (Child, String) {
    start_with(data, sip, rest, &[]).await
}

async fn start_with(
    data: &Path,
    sip: SocketAddr,
    rest: SocketAddr,
    extra: &[&str],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calanque"))
        .args([
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("udp:{sip}"),
            "--rest",
            &rest.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Then dial") {
                return;
            }
        }
        panic!("calanque run exited before its banner:\n{banner}");
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the banner in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

fn credentials(data: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(data.join("demo-credentials.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields[0].to_owned(), fields[2].to_owned())
        })
        .collect()
}

async fn stop(mut child: Child) {
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("calanque run stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

async fn call(first: &(String, String), second: &(String, String), sip: SocketAddr, id: &str) {
    let mut caller = Phone::new(&first.0, &first.1, REALM, sip).await;
    let mut callee = Phone::new(&second.0, &second.1, REALM, sip).await;
    caller.register().await;
    callee.register().await;
    caller.call(&second.0, id).await;
    let invite = callee.request().await;
    assert_eq!(invite.method, Method::Invite);
    callee.reply(&invite, StatusCode::RINGING, "t").await;
    assert_eq!(caller.response(true).await.status, StatusCode::RINGING);
    callee.reply(&invite, StatusCode::OK, "t").await;
    let answered = caller.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let ack = caller.in_dialog(&answered, "ACK", 2);
    caller.send(ack.as_bytes()).await;
    let bye = caller.in_dialog(&answered, "BYE", 3);
    caller.send(bye.as_bytes()).await;
    assert_eq!(caller.response(false).await.status, StatusCode::OK);
    // The callee got its ACK, then the BYE.
    let mut methods = Vec::new();
    while methods.last() != Some(&Method::Bye) && methods.len() < 4 {
        methods.push(callee.request().await.method);
    }
    assert_eq!(methods.last(), Some(&Method::Bye), "{methods:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_starts_calanque_registers_two_phones_and_calls() {
    let data = tempfile::tempdir().unwrap();
    let sip: SocketAddr = format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap();
    let rest: SocketAddr = format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap();
    let (child, banner) = start(data.path(), sip, rest).await;
    let phones = credentials(data.path());
    assert_eq!(phones.len(), 3, "{banner}");
    for (extension, password) in &phones {
        assert!(
            banner.contains(extension) && banner.contains(password),
            "the banner shows the credentials:\n{banner}"
        );
    }
    call(&phones[0], &phones[1], sip, "first@test").await;
    // Across sites: 1001 (town hall) calls 2001 (library) by its full number.
    call(&phones[0], &phones[2], sip, "cross-site@test").await;
    stop(child).await;

    // A second start keeps the directory: no new demo phones, the same passwords work.
    let (child, banner) = start(data.path(), sip, rest).await;
    assert!(!banner.contains("demo phones (also in"), "{banner}");
    assert_eq!(credentials(data.path()), phones);
    call(&phones[1], &phones[0], sip, "second-run@test").await;
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_in_one_serves_its_health_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let free = || -> SocketAddr {
        format!("127.0.0.1:{}", testkit::process::free_port())
            .parse()
            .unwrap()
    };
    let (sip, rest, telemetry) = (free(), free(), free());
    let (child, banner) = start_with(
        data.path(),
        sip,
        rest,
        &["--telemetry-listen", &telemetry.to_string()],
    )
    .await;
    assert!(
        banner.contains(&format!("http://{telemetry}/metrics")),
        "the banner names the endpoints:\n{banner}"
    );
    let phones = credentials(data.path());
    call(&phones[0], &phones[1], sip, "metrics@test").await;
    let get = |path: &'static str| async move {
        let response = reqwest::get(format!("http://{telemetry}{path}"))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
    let expected = [
        r#"calanque_build_info{version="#,
        r#"service="all-in-one"} 1"#,
        "calanque_ready 1",
        // A gauge the edge refreshes once a second: polled below.
        "calanque_registration_bindings 2",
        r#"calanque_call_setups_total{result="answered",status="200"} 1"#,
        r#"calanque_sip_requests_total{method="INVITE",transport="udp"}"#,
    ];
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = get("/metrics").await.1;
        if expected.iter().all(|e| metrics.contains(e)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in expected {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    stop(child).await;
}
