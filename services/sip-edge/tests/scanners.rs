//! Scanners learn nothing from the edge: SIPVicious (Debian `sipvicious`) svmap finds no SIP
//! device and svwar no extension, because the edge does not answer their User-Agent at all;
//! and without that drop (a scanner that lies about its User-Agent) existing and unknown
//! users still get the same answers: svwar finds nothing, and a probe with a phone's
//! User-Agent gets byte-identical answers for both apart from tags, nonces, Via and Call-ID.
//!
//! svmap and svwar run as child processes bounded in time (killed on timeout), on free
//! local ports (never 5060).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use sip_core::digest::Algorithm;
use sip_edge::EdgeHandle;
use sip_msg::{Response, SipMessage};
use support::*;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// Bound on one svmap/svwar run (each waits 3 s for a silent target).
const TOOL_LIMIT: Duration = Duration::from_secs(15);

/// Usernames for svwar: seeded devices (`user1`..`user5`) and names that do not exist.
const DICTIONARY: &[&str] = &[
    "user1", "nobody", "user2", "100", "user3", "admin", "user4", "user9999", "user5", "alice",
];

async fn udp_edge(protected: bool) -> (testkit::etcd::EtcdServer, EdgeHandle, SocketAddr) {
    let (etcd, store) = etcd().await;
    seed_devices(&store, 0..6).await;
    let mut config = edge_config(if protected { "edge-1" } else { "edge-bare" });
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    if !protected {
        // A scanner that lies about its User-Agent.
        config.protection.scanner_user_agents.clear();
    }
    let edge = start_edge(config, store, in_process_bus()).await;
    let addr = udp_addr(&edge);
    (etcd, edge, addr)
}

/// What a tool printed (stdout, stderr) and how long it ran.
struct ToolRun {
    stdout: String,
    stderr: String,
    took: Duration,
}

impl ToolRun {
    fn all(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `program args…` to its end, killed after [`TOOL_LIMIT`].
async fn run_tool(program: &str, args: &[String], dir: &std::path::Path) -> ToolRun {
    assert!(
        testkit::process::installed(program),
        "{program} is not installed: scripts/ensure-deps.sh installs Debian's sipvicious"
    );
    let started = Instant::now();
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let output = timeout(TOOL_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} ran longer than {TOOL_LIMIT:?}"))
        .unwrap();
    let run = ToolRun {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    };
    println!(
        "$ {program} {}\n(exit {:?}, {:?})\n{}",
        args.join(" "),
        output.status.code(),
        run.took,
        run.all()
    );
    run
}

fn free_port() -> String {
    testkit::process::free_port().to_string()
}

async fn svmap(edge: SocketAddr, dir: &std::path::Path) -> ToolRun {
    let args: Vec<String> = [
        "-p",
        &edge.port().to_string(),
        "-P",
        &free_port(),
        "-b",
        "127.0.0.1",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    run_tool("svmap", &args, dir).await
}

async fn svwar(edge: SocketAddr, dir: &std::path::Path, force: bool) -> ToolRun {
    let dictionary = dir.join("dictionary.txt");
    std::fs::write(&dictionary, DICTIONARY.join("\n") + "\n").unwrap();
    let mut args: Vec<String> = [
        "-d",
        &dictionary.to_string_lossy(),
        "-m",
        "REGISTER",
        "-P",
        &free_port(),
        "-b",
        "127.0.0.1",
        "--maximumtime",
        "5",
        "-p",
        &edge.port().to_string(),
        "127.0.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if force {
        args.insert(0, "--force".to_owned());
    }
    run_tool("svwar", &args, dir).await
}

/// The rows of svmap's or svwar's result table (`| a | b |` lines after the header).
fn table_rows(output: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = output
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    // The first row is the header (`SIP Device | User Agent` / `Extension | Authentication`).
    rows.into_iter().skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svmap_and_svwar_get_no_answer_and_find_nothing() {
    let (_etcd, edge, addr) = udp_edge(true).await;
    let dir = tempfile::tempdir().unwrap();

    let map = svmap(addr, dir.path()).await;
    let after_map = edge.protection_stats();
    let devices = table_rows(&map.all());
    let war = svwar(addr, dir.path(), false).await;
    let after_war = edge.protection_stats();
    let extensions = table_rows(&war.all());
    println!("svmap devices {devices:?}; svwar extensions {extensions:?}");
    println!("stats after svmap {after_map:?}; after svwar {after_war:?}");

    assert!(
        devices.is_empty(),
        "svmap found a SIP device: {devices:?}\n{}",
        map.all()
    );
    assert!(
        !map.all().contains(&addr.to_string()),
        "svmap printed the edge's address:\n{}",
        map.all()
    );
    assert!(
        after_map.dropped_scanner >= 1,
        "the edge did not count svmap's request as a scanner's: {after_map:?}"
    );
    assert!(
        extensions.is_empty(),
        "svwar found extensions: {extensions:?}\n{}",
        war.all()
    );
    assert!(
        war.all().contains("found nothing"),
        "svwar did not report finding nothing:\n{}",
        war.all()
    );
    assert!(
        !war.all().contains("exists"),
        "svwar reports an existing extension:\n{}",
        war.all()
    );
    assert!(
        after_war.dropped_scanner > after_map.dropped_scanner,
        "the edge did not count svwar's requests as a scanner's: {after_war:?}"
    );
    // Scanners are dropped, never banned (a spoofed User-Agent must not ban an address).
    assert_eq!(after_war.bans_issued, 0, "{after_war:?}");
    edge.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_user_agent_drop_svwar_still_cannot_tell_users_apart() {
    let (_etcd, edge, addr) = udp_edge(false).await;
    let dir = tempfile::tempdir().unwrap();

    // The control: this edge answers svmap, and svmap's table shows it.
    let map = svmap(addr, dir.path()).await;
    let devices = table_rows(&map.all());
    println!("svmap devices of the edge without scanner drops: {devices:?}");
    assert!(
        devices
            .iter()
            .any(|row| row.first().is_some_and(|c| c.contains(&addr.to_string()))),
        "svmap did not find the edge that answers it (the table parser is wrong?):\n{}",
        map.all()
    );

    // svwar compares each answer with the answer for a random (unknown) extension: all the
    // same, so it finds nothing.
    let war = svwar(addr, dir.path(), true).await;
    let extensions = table_rows(&war.all());
    println!("svwar --force extensions: {extensions:?}");
    assert!(
        extensions.is_empty(),
        "svwar told existing extensions apart: {extensions:?}\n{}",
        war.all()
    );
    assert!(
        war.all().contains("found nothing"),
        "svwar did not report finding nothing:\n{}",
        war.all()
    );
    assert_eq!(edge.protection_stats().dropped_scanner, 0);
    edge.abort();
}

/// A REGISTER for `user` from `local`, with a phone's User-Agent and optional credentials.
fn register_text(local: SocketAddr, user: &str, cseq: u32, authorization: Option<&str>) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{:016x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{REALM}>;tag={:08x}\r\n\
         To: <sip:{user}@{REALM}>\r\n\
         Call-ID: {:016x}@probe\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{local}>\r\n\
         Expires: 600\r\n\
         User-Agent: Yealink SIP-T46U 108.86.0.45\r\n\
         {auth}Content-Length: 0\r\n\r\n",
        rand::random::<u64>(),
        rand::random::<u32>(),
        rand::random::<u64>(),
    )
}

/// Sends `text` and returns the raw final answer.
async fn exchange(socket: &UdpSocket, edge: SocketAddr, text: &str) -> String {
    socket.send_to(text.as_bytes(), edge).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, _) = timeout(left, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer to\n{text}"))
            .unwrap();
        let raw = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Ok(SipMessage::Response(r)) = sip_msg::parse_datagram(&buf[..n])
            && r.status.as_u16() >= 200
        {
            return raw;
        }
    }
}

fn parse(raw: &str) -> Response {
    match sip_msg::parse_datagram(raw.as_bytes()) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

/// Masks what legitimately differs between two answers: the username echoed in From/To,
/// tags, nonces (and opaque), and the Via and Call-ID values echoed from the request.
fn normalize(raw: &str, user: &str) -> String {
    let mut lines = Vec::new();
    for line in raw.split("\r\n") {
        let line = line.replace(user, "<user>");
        let lower = line.to_ascii_lowercase();
        let (name, _) = line.split_once(':').unwrap_or((&line, ""));
        let compact = lower.split(':').next().unwrap_or("").trim().to_owned();
        let masked = match compact.as_str() {
            "via" | "v" | "call-id" | "i" => format!("{name}: <masked>"),
            _ => mask_param(
                &mask_param(&mask_param(&line, "tag="), "nonce=\""),
                "opaque=\"",
            ),
        };
        lines.push(masked);
    }
    lines.join("\r\n")
}

/// Replaces the value after every `key` (up to `"`, `;`, `,` or the end) with `<masked>`.
fn mask_param(line: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(key) {
        out.push_str(&rest[..at + key.len()]);
        rest = &rest[at + key.len()..];
        let end = rest.find(['"', ';', ',', '>', ' ']).unwrap_or(rest.len());
        out.push_str("<masked>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn shape(r: &Response) -> (u16, String, Vec<String>) {
    (
        r.status.as_u16(),
        r.reason.to_string(),
        r.headers
            .iter()
            .map(|h| h.name.as_str().to_ascii_lowercase())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_and_unknown_users_get_identical_answers_with_a_phone_user_agent() {
    let (_etcd, edge, addr) = udp_edge(true).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();

    // Pairs (existing, unknown) with names of the same length, so that nothing but the
    // name itself differs.
    for (existing, unknown) in [("user1", "userx"), ("user2", "nob02")] {
        // The first REGISTER, without credentials.
        let a = exchange(&socket, addr, &register_text(local, existing, 1, None)).await;
        let b = exchange(&socket, addr, &register_text(local, unknown, 1, None)).await;
        println!("--- {existing} ---\n{a}--- {unknown} ---\n{b}");
        let (ra, rb) = (parse(&a), parse(&b));
        assert_eq!(ra.status.as_u16(), 401, "{a}");
        assert_eq!(shape(&ra), shape(&rb), "challenges differ:\n{a}\n{b}");
        assert_eq!(
            normalize(&a, existing),
            normalize(&b, unknown),
            "challenges differ beyond tags, nonces, Via and Call-ID"
        );
        assert_eq!(a.len(), b.len(), "challenge sizes differ:\n{a}\n{b}");

        // Then a wrong password for both.
        let wrong_a = credentials_for(&ra, existing, "wrong", Algorithm::Md5);
        let wrong_b = credentials_for(&rb, unknown, "wrong", Algorithm::Md5);
        let a2 = exchange(
            &socket,
            addr,
            &register_text(local, existing, 2, Some(&wrong_a)),
        )
        .await;
        let b2 = exchange(
            &socket,
            addr,
            &register_text(local, unknown, 2, Some(&wrong_b)),
        )
        .await;
        println!("--- {existing}, wrong password ---\n{a2}--- {unknown} ---\n{b2}");
        let (ra2, rb2) = (parse(&a2), parse(&b2));
        assert_eq!(ra2.status.as_u16(), 401, "{a2}");
        assert_eq!(shape(&ra2), shape(&rb2), "answers differ:\n{a2}\n{b2}");
        assert_eq!(
            normalize(&a2, existing),
            normalize(&b2, unknown),
            "answers to wrong credentials differ beyond tags, nonces, Via and Call-ID"
        );
    }
    // The right password still works (the comparison above is not of two broken answers).
    let r = exchange(&socket, addr, &register_text(local, "user3", 1, None)).await;
    let good = credentials_for(&parse(&r), "user3", &password(3), Algorithm::Md5);
    let ok = exchange(
        &socket,
        addr,
        &register_text(local, "user3", 2, Some(&good)),
    )
    .await;
    assert_eq!(parse(&ok).status.as_u16(), 200, "{ok}");
    edge.abort();
}
