//! The `calanque-media` binary connects to NATS, says it is ready, serves allocations on the
//! bus, and stops on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bus::{NatsBus, NatsOptions};
use media::relay::LegOptions;
use media::{AllocateRequest, MediaClient, MediaControl};
use testkit::nats::NatsServer;

#[test]
fn serves_the_bus_and_stops_on_sigterm() {
    let nats = NatsServer::start().unwrap();
    let base = 20_000 + 2 * rand::random_range(0..19_000u16);
    let mut child = Command::new(env!("CARGO_BIN_EXE_calanque-media"))
        .args([
            "--nats",
            &nats.url(),
            "--media-id",
            "media-bin",
            "--listen-ip",
            "127.0.0.1",
            "--ports",
            &format!("{base}-{}", base + 99),
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("media relay ready"))
        .expect("no ready line");
    assert!(ready.contains("pairs=50"), "{ready}");
    assert!(ready.contains("media-bin"), "{ready}");

    // Call-control's side: an allocation over NATS comes from this replica, in its range.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = NatsBus::connect(NatsOptions::new("binary-test", vec![nats.url()]))
            .await
            .unwrap();
        let client = MediaClient::new(Arc::new(bus), Duration::from_secs(2));
        let remote = client
            .allocate_remote(AllocateRequest {
                call_id: "call@binary".into(),
                leg_a: LegOptions::default(),
                leg_b: LegOptions::default(),
            })
            .await
            .unwrap();
        assert_eq!(remote.media_id, "media-bin");
        let port = remote.allocation.leg_a.port();
        assert!((base..base + 100).contains(&port), "{port}");
        client.release(remote.allocation.session).await.unwrap();
    });

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn refuses_an_inverted_port_range() {
    let output = Command::new(env!("CARGO_BIN_EXE_calanque-media"))
        .args(["--nats", "nats://127.0.0.1:1", "--ports", "30000-20000"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn refuses_a_media_id_that_is_not_one_subject_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_calanque-media"))
        .args(["--nats", "nats://127.0.0.1:1", "--media-id", "a.b"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("media-id"), "{stderr}");
}
