//! A real softphone call through `calanque run`: two baresip instances (Debian `baresip`)
//! register with the demo credentials, one calls the other, the callee auto-answers, a 1 kHz
//! tone flows both ways (RTP packet counts and the recorded audio's frequency), the caller
//! hangs up, and the call record is in `<data>/cdr.jsonl`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use testkit::baresip::{Account, Baresip, BaresipOptions};
use testkit::sipp::SipUser;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Starts `calanque run` with `extra` flags; returns it, its data directory and its SIP address.
async fn start_all_in_one(
    extra: &[&str],
) -> (tokio::process::Child, tempfile::TempDir, SocketAddr) {
    let data = tempfile::tempdir().unwrap();
    let sip: SocketAddr = format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap();
    let rest = format!("127.0.0.1:{}", testkit::process::free_port());
    let mut args = vec![
        "run".to_owned(),
        "--data-dir".to_owned(),
        data.path().to_str().unwrap().to_owned(),
        "--listen".to_owned(),
        format!("udp:{sip}"),
        "--rest".to_owned(),
        rest,
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_calanque"))
        .args(&args)
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
    (child, data, sip)
}

fn demo_users(data: &std::path::Path) -> Vec<SipUser> {
    std::fs::read_to_string(data.join("demo-credentials.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            SipUser {
                username: f[0].into(),
                domain: "calanque".into(),
                password: f[2].into(),
            }
        })
        .collect()
}

/// `caller` calls `callee` with baresip: 3 s of a 1 kHz tone each way, then hang-up; asserts
/// packets and the heard frequency on both sides. Returns the callee's log (its SIP trace).
async fn baresip_call(caller: SipUser, callee: SipUser, sip: SocketAddr) -> String {
    let outcome = tokio::task::spawn_blocking(move || {
        let wait = Duration::from_secs(10);
        let mut a = Baresip::start(BaresipOptions::new(Account::registered(&caller, sip))).unwrap();
        let mut b = Baresip::start(BaresipOptions::new(Account::registered(&callee, sip))).unwrap();
        a.wait_registered(wait).unwrap();
        b.wait_registered(wait).unwrap();
        a.dial(&format!("sip:{}@calanque", callee.username))
            .unwrap();
        a.wait_call_established(wait).unwrap();
        b.wait_call_established(wait).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        a.hangup().unwrap();
        a.wait_call_closed(wait).unwrap();
        b.wait_call_closed(wait).unwrap();
        let (sa, sb) = (
            a.wait_call_summary(wait).unwrap(),
            b.wait_call_summary(wait).unwrap(),
        );
        let (heard_by_b, heard_by_a) = (b.received_audio().unwrap(), a.received_audio().unwrap());
        (sa, sb, heard_by_a, heard_by_b, b.log())
    })
    .await
    .unwrap();
    let (sa, sb, heard_by_a, heard_by_b, callee_log) = outcome;
    eprintln!(
        "caller {sa:?}\ncallee {sb:?}\nheard by caller {heard_by_a:?}\nheard by callee {heard_by_b:?}"
    );
    for (side, summary) in [("caller", &sa), ("callee", &sb)] {
        assert!(
            summary.tx_packets >= 100 && summary.rx_packets >= 100,
            "{side}: {summary:?}"
        );
    }
    for (side, heard) in [("caller", &heard_by_a), ("callee", &heard_by_b)] {
        let hz = heard.frequency_hz;
        assert!(
            (950.0..1050.0).contains(&hz),
            "{side} heard {hz} Hz: {heard:?}"
        );
    }
    callee_log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_baresip_softphones_call_each_other_through_the_all_in_one() {
    let (_child, data, sip) = start_all_in_one(&[]).await;
    let users = demo_users(data.path());
    let callee_log = baresip_call(users[0].clone(), users[1].clone(), sip).await;
    assert!(
        callee_log.contains("m=audio"),
        "the SIP trace is in the log"
    );

    // The call record.
    // (appended off the call path: allow it a moment)
    let mut cdr = String::new();
    for _ in 0..100 {
        cdr = std::fs::read_to_string(data.path().join("cdr.jsonl")).unwrap_or_default();
        if !cdr.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let record: serde_json::Value = serde_json::from_str(cdr.lines().last().unwrap()).unwrap();
    assert_eq!(record["outcome"], "answered", "{cdr}");
    assert!(
        record["caller"]
            .as_str()
            .unwrap()
            .contains(&users[0].username),
        "{cdr}"
    );
    assert!(
        record["callee"]
            .as_str()
            .unwrap()
            .contains(&users[1].username),
        "{cdr}"
    );
    assert!(record["duration_s"].as_f64().unwrap() >= 2.0, "{cdr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_the_relay_site_flows_through_the_in_process_media_relay() {
    let first = 31000 + (testkit::process::free_port() % 200) * 10;
    let ports = format!("{first}-{}", first + 9);
    let (_child, data, sip) =
        start_all_in_one(&["--media-ip", "127.0.0.1", "--media-ports", &ports]).await;
    let users = demo_users(data.path());
    // 1001 (town hall, direct) calls 2001 (library, relay): anchored on the relay.
    let callee_log = baresip_call(users[0].clone(), users[2].clone(), sip).await;
    // The offer the callee got names a relay port, not the caller's own.
    let offered: Vec<u16> = callee_log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("m=audio "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        offered.iter().any(|p| (first..first + 10).contains(p)),
        "no relay port ({ports}) in the SDP the callee saw: {offered:?}"
    );
}
