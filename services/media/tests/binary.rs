//! The `calanque-media` binary starts, says it is ready, and stops on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn starts_and_stops_on_sigterm() {
    let base = 20_000 + 2 * rand::random_range(0..19_000u16);
    let mut child = Command::new(env!("CARGO_BIN_EXE_calanque-media"))
        .args([
            "--bind-ip",
            "127.0.0.1",
            "--port-min",
            &base.to_string(),
            "--port-max",
            &(base + 99).to_string(),
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
        .args(["--port-min", "30000", "--port-max", "20000"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
