//! Call scenarios end to end with real processes: a SIPp caller → the edge → call-control → the
//! edge → a SIPp callee (or a SIPp "carrier" at the end of a trunk), through `calanque run`
//! started as a child process on its own data directory, one per test.
//!
//! Each test checks the SIP outcome on both sides (SIPp's exit status and statistics, and what
//! the scenarios logged) and the call's record in `<data>/cdr.jsonl` (outcome, final status,
//! cause):
//!
//! 1. RTP played from a pcap by the caller crosses the media relay (the callee is on the demo's
//!    `Relay` site) and reaches a socket this test binds as the callee's media address: every
//!    packet, from the relay's port named in the callee's SDP, with the pcap's payloads.
//! 2. Busy: 486 from the callee reaches the caller.
//! 3. No answer: 480 to the caller at the ring timeout (`--ring-timeout 3`), CANCEL to the callee.
//! 4. CANCEL while ringing: 200 and 487 to the caller, both with the 180's To tag (RFC 3261
//!    §8.2.6.2), CANCEL to the callee.
//! 5. Hold and resume: two re-INVITEs (`a=sendonly`, `a=sendrecv`) relayed with their answers.
//! 6. The callee hangs up: the caller gets the BYE.
//! 7. A number the caller's class of service bars: 403 with the reason, nothing to the trunk.
//! 8. 112 reaches the carrier through the site's emergency route although the caller's class
//!    of service bars every external call.
//!
//! The scenarios are in `e2e/sipp/` (README.md there). Trunks, routes, the site's emergency
//! route and the caller's class of service are configured as an administrator would, through
//! the directory's REST API with the token `calanque run` wrote into its data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use test_phone::Phone;
use testkit::sipp::{self, SipUser, SippBackground, SippOutcome, SippRun};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const REALM: &str = "calanque";
/// The capture SIPp plays (Debian's sip-tester ships it): 236 RTP packets, G.711 A-law.
const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
/// Ports the in-process relay may use in a test (a free run of them is looked for).
const RELAY_PORTS: u16 = 20;

// ---------------------------------------------------------------------------------------------
// calanque run

/// How a test wants its `calanque run`.
#[derive(Debug, Default, Clone, Copy)]
struct PbxOptions {
    /// Run the media relay in-process (`--media-ip 127.0.0.1 --media-ports …`).
    relay: bool,
    /// `--ring-timeout`, seconds (calanque's default when `None`).
    ring_timeout: Option<u64>,
}

/// A `calanque run` child process on a fresh data directory; killed when dropped.
#[derive(Debug)]
struct Pbx {
    _child: Child,
    data: tempfile::TempDir,
    sip: SocketAddr,
    rest: SocketAddr,
    /// Extension → password, from `demo-credentials.txt`.
    passwords: HashMap<String, String>,
    /// The relay's port range, when it runs.
    media_ports: Option<(u16, u16)>,
}

impl Pbx {
    async fn start(options: PbxOptions) -> Pbx {
        assert!(
            testkit::process::installed("sipp"),
            "sipp not found on PATH: run `make deps` (scripts/ensure-deps.sh installs sip-tester)"
        );
        let data = tempfile::tempdir().unwrap();
        let sip: SocketAddr = (Ipv4Addr::LOCALHOST, free_udp_port()).into();
        let rest: SocketAddr = (Ipv4Addr::LOCALHOST, testkit::process::free_port()).into();
        let mut args = vec![
            "run".to_owned(),
            "--data-dir".to_owned(),
            data.path().to_str().unwrap().to_owned(),
            "--listen".to_owned(),
            format!("udp:{sip}"),
            "--rest".to_owned(),
            rest.to_string(),
        ];
        let media_ports = options.relay.then(free_udp_range);
        if let Some((first, last)) = media_ports {
            args.extend([
                "--media-ip".to_owned(),
                "127.0.0.1".to_owned(),
                "--media-ports".to_owned(),
                format!("{first}-{last}"),
            ]);
        }
        if let Some(seconds) = options.ring_timeout {
            args.extend(["--ring-timeout".to_owned(), seconds.to_string()]);
        }
        let log = std::fs::File::create(data.path().join("calanque.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_calanque"))
            .args(&args)
            .env("RUST_LOG", "warn,call_control=info")
            .stdout(Stdio::piped())
            .stderr(log)
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
        .expect("calanque run printed its banner within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let passwords = std::fs::read_to_string(data.path().join("demo-credentials.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields[0].to_owned(), fields[2].to_owned())
            })
            .collect();
        Pbx {
            _child: child,
            data,
            sip,
            rest,
            passwords,
            media_ports,
        }
    }

    fn password(&self, extension: &str) -> &str {
        self.passwords
            .get(extension)
            .unwrap_or_else(|| panic!("no demo phone {extension}"))
    }

    /// Registers `extension` from a free port and frees the port for a SIPp callee.
    async fn register(&self, extension: &str) -> u16 {
        let mut phone = Phone::new(extension, self.password(extension), REALM, self.sip).await;
        phone.register().await;
        let port = phone.local.port();
        assert!(claim_port(port), "port {port} registered twice");
        port
    }

    /// A SIPp caller run of `scenario` as `extension` dialling `number` (MD5 credentials).
    fn caller(&self, scenario: &str, extension: &str, number: &str) -> SippRun {
        let csv = self.data.path().join(format!("caller-{extension}.csv"));
        sipp::write_users_csv(
            &csv,
            &[SipUser {
                username: extension.to_owned(),
                domain: REALM.to_owned(),
                password: self.password(extension).to_owned(),
            }],
        )
        .unwrap();
        SippRun::new(sipp::scenario(scenario), self.sip)
            .local_port(free_udp_port())
            .inf(&csv)
            .service(number)
            .auth_uri(&format!("{number}@{REALM}"))
            .timeout(Duration::from_secs(30))
            .media_port(free_udp_port())
    }

    /// Starts a SIPp callee of `scenario` on `port` (registered, or a trunk's address), with
    /// `-key` values, and waits until it holds the port so that the first INVITE finds it.
    async fn callee(&self, scenario: &str, port: u16, keys: &[(&str, &str)]) -> SippBackground {
        let mut run = SippRun::new(sipp::scenario(scenario), self.sip)
            .local_port(port)
            .timeout(Duration::from_secs(30))
            .media_port(free_udp_port());
        for (name, value) in keys {
            run = run.key(name, value);
        }
        let callee = run
            .spawn()
            .unwrap_or_else(|e| panic!("the SIPp callee: {e}"));
        for _ in 0..100 {
            if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                return callee;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the SIPp callee did not bind 127.0.0.1:{port} within 2 s");
    }

    /// The record of the call `call_id`, waiting up to 5 s for the CDR thread to write it.
    async fn cdr(&self, call_id: &str) -> Value {
        let path = self.data.path().join("cdr.jsonl");
        for _ in 0..50 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|record| record["call_id"] == call_id);
            if let Some(record) = found {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no CDR for call {call_id} in {}:\n{}\n--- calanque log ---\n{}",
            path.display(),
            std::fs::read_to_string(&path).unwrap_or_default(),
            self.log_tail()
        );
    }

    /// Asserts the one call's CDR: its outcome, the final status and the cause (a refusal's
    /// reason; `cause` must be part of it, or the cause must be empty when `cause` is).
    async fn assert_cdr(&self, call_id: &str, outcome: &str, status: u64, cause: &str) -> Value {
        let record = self.cdr(call_id).await;
        eprintln!("CDR: {record}");
        assert_eq!(
            (record["outcome"].as_str(), record["status"].as_u64()),
            (Some(outcome), Some(status)),
            "CDR of {call_id}: {record}"
        );
        let recorded = record["cause"]
            .as_str()
            .unwrap_or_else(|| panic!("no cause: {record}"));
        if cause.is_empty() {
            assert_eq!(recorded, "", "CDR of {call_id}: {record}");
        } else {
            assert!(
                recorded.contains(cause),
                "CDR of {call_id} wants a cause with {cause:?}: {record}"
            );
        }
        let lines = std::fs::read_to_string(self.data.path().join("cdr.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 1, "one call, one record:\n{lines}");
        record
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.data.path().join("calanque.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// One request to the directory's REST API with the admin token; panics unless 2xx.
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let token = std::fs::read_to_string(self.data.path().join("admin-token")).unwrap();
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("http://{}{path}", self.rest))
            .bearer_auth(token.trim())
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// What an administrator sets up for external calls: a carrier trunk at `carrier`, routes
    /// for international (`00…`) and national (`0[1-9]…`) numbers through it, 112 as site
    /// S-1's emergency number through it, and extension `extension` moved to the demo's
    /// `internal` class of service (no external calls).
    async fn configure_external_calls(&self, carrier: SocketAddr, extension: &str) {
        use reqwest::Method;
        let trunk = json!({
            "name": "carrier", "kind": "carrier", "address": carrier.to_string(),
            "transport": "udp", "auth": null, "number_ranges": [], "max_channels": null,
        });
        self.admin(Method::POST, "/v1/trunk", Some(&trunk)).await;
        for (id, pattern, category) in [
            ("R-international", "00.", "international"),
            ("R-national", "0[1-9]XXXXXXXX", "national"),
        ] {
            let route = json!({
                "id": id, "pattern": pattern, "target": {"trunk": "carrier"}, "priority": 10,
                "category": category, "strip_digits": 0, "prepend": null,
            });
            self.admin(Method::POST, "/v1/route", Some(&route)).await;
        }
        let mut site = self.admin(Method::GET, "/v1/site/S-1", None).await;
        site["emergency_routes"] = json!([{"number": "112", "trunk": "carrier"}]);
        self.admin(Method::PUT, "/v1/site/S-1", Some(&site)).await;
        let path = format!("/v1/extension/{extension}");
        let mut entry = self.admin(Method::GET, &path, None).await;
        entry["class_of_service"] = json!("internal");
        self.admin(Method::PUT, &path, Some(&entry)).await;
        // The edge and call-control follow the directory through the store's watch.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// SIPp runs

/// Runs `caller` to its end (the callee, already started, then finishes on its own).
async fn run_call(
    caller: SippRun,
    callee: Option<SippBackground>,
) -> (SippOutcome, Option<SippOutcome>) {
    let caller = tokio::task::spawn_blocking(move || caller.run())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the SIPp caller: {e}"));
    let callee = match callee {
        Some(callee) => Some(
            tokio::task::spawn_blocking(move || callee.wait())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("the SIPp callee: {e}")),
        ),
        None => None,
    };
    (caller, callee)
}

/// Asserts that the run's one call succeeded (every check of its scenario passed).
fn assert_one_success(outcome: &SippOutcome, who: &str) {
    if let Err(e) = outcome.check(1, 0) {
        panic!(
            "{who}: {e}\n--- messages ---\n{}",
            tail(&outcome.messages(), 80)
        );
    }
}

/// The Call-ID of the run's first message (the caller's dialog: the CDR's `call_id`).
fn call_id(outcome: &SippOutcome) -> String {
    outcome
        .messages()
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("Call-ID:")
                .or_else(|| l.strip_prefix("i:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Call-ID in the trace of {}", outcome.scenario))
}

/// The scenario's `<log>` lines starting with `prefix`, the prefix removed.
fn logged(outcome: &SippOutcome, prefix: &str) -> Vec<String> {
    outcome
        .logs
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(|rest| rest.trim().to_owned())
        })
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free UDP port on loopback (bound and released), never handed out twice in this process:
/// SIPp binds UDP ports, which `testkit::process::free_port` (a TCP probe) does not check.
fn free_udp_port() -> u16 {
    loop {
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap();
        if claim_port(port) {
            return port;
        }
    }
}

/// Records `port` as handed out to a process of this test binary; false if it already was.
fn claim_port(port: u16) -> bool {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if given.contains(&port) {
        return false;
    }
    given.push(port);
    true
}

/// A run of [`RELAY_PORTS`] UDP ports below the ephemeral range, all free right now.
fn free_udp_range() -> (u16, u16) {
    let offset = (std::process::id() % 200) as u16 * 40;
    for step in 0..250u16 {
        let first = 20_000 + (offset + step * RELAY_PORTS * 2) % 9_000;
        let first = first + first % 2;
        let last = first + RELAY_PORTS - 1;
        let sockets: Vec<_> = (first..=last)
            .map_while(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).ok())
            .collect();
        if sockets.len() == usize::from(RELAY_PORTS) {
            return (first, last);
        }
    }
    panic!("no {RELAY_PORTS} free UDP ports in 20000-29999");
}

// ---------------------------------------------------------------------------------------------
// RTP: the pcap and what reaches the callee

/// The RTP packets (UDP payloads) of a libpcap capture of Ethernet/IPv4/UDP frames.
fn pcap_rtp_packets(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 24, "{}: no pcap header", path.display());
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        other => panic!("{}: not a pcap file (magic {other:02x?})", path.display()),
    };
    let u32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(
        u32_at(20),
        1,
        "{}: link type is not Ethernet",
        path.display()
    );
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32_at(at + 8) as usize;
        let frame = &bytes[at + 16..(at + 16 + captured).min(bytes.len())];
        at += 16 + captured;
        // Ethernet II, IPv4 (any header length), UDP.
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip.len() < header_len + 8 {
            continue;
        }
        let udp = &ip[header_len..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).min(udp.len());
        if udp_len >= 8 {
            packets.push(udp[8..udp_len].to_vec());
        }
    }
    packets
}

/// The payload of an RTP packet (after the fixed header, the CSRCs and any extension).
fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut at = 12 + usize::from(packet[0] & 0x0f) * 4;
    if packet[0] & 0x10 != 0 {
        let words = packet.get(at + 2..at + 4)?;
        at += 4 + usize::from(u16::from_be_bytes([words[0], words[1]])) * 4;
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    packet.get(at..end)
}

/// A UDP socket standing for the callee's media port: keeps every datagram and its source
/// until stopped.
#[derive(Debug)]
struct RtpSink {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(SocketAddr, Vec<u8>)>>,
}

impl RtpSink {
    fn start() -> RtpSink {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut received = Vec::new();
            let mut buf = [0u8; 2048];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((n, source)) = socket.recv_from(&mut buf) {
                    received.push((source, buf[..n].to_vec()));
                }
            }
            received
        });
        RtpSink { port, stop, thread }
    }

    fn finish(self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Reads "`<ip> <port> …`" as a socket address.
fn logged_address(line: &str) -> SocketAddr {
    let mut fields = line.split_whitespace();
    let ip = fields.next().unwrap_or_default();
    let port = fields.next().unwrap_or_default();
    format!("{ip}:{port}")
        .parse()
        .unwrap_or_else(|_| panic!("not an address: {line:?}"))
}

// ---------------------------------------------------------------------------------------------
// The scenarios

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_played_from_a_pcap_reaches_the_callee_through_the_relay() {
    let expected = pcap_rtp_packets(Path::new(PCAP));
    assert_eq!(
        expected.len(),
        236,
        "{PCAP} is not the capture this test knows"
    );
    let pbx = Pbx::start(PbxOptions {
        relay: true,
        ..Default::default()
    })
    .await;
    let (relay_first, relay_last) = pbx.media_ports.unwrap();
    let sink = RtpSink::start();
    let sink_port = sink.port;
    let callee_port = pbx.register("2001").await;
    let callee = pbx
        .callee(
            "call_uas_rtp.xml",
            callee_port,
            &[("rtp_port", &sink_port.to_string())],
        )
        .await;
    let caller_media = free_udp_port();
    let caller = pbx
        .caller("call_uac_pcap.xml", "1001", "2001")
        .media_port(caller_media);
    let (caller, callee) = run_call(caller, Some(callee)).await;
    let callee = callee.unwrap();
    let received = sink.finish();
    assert_one_success(&caller, "caller");
    assert_one_success(&callee, "callee");

    // The SDP each side got points at the relay: 127.0.0.1 and a port of its range, not the
    // other phone's.
    let offer = logged(&callee, "OFFER");
    let answer = logged(&caller, "ANSWER");
    assert_eq!((offer.len(), answer.len()), (1, 1), "{offer:?} {answer:?}");
    let relay_b = logged_address(&offer[0]);
    let relay_a = logged_address(&answer[0]);
    for (what, address, phone) in [
        ("the callee's offer", relay_b, caller_media),
        ("the caller's answer", relay_a, sink_port),
    ] {
        assert_eq!(address.ip(), Ipv4Addr::LOCALHOST, "{what}: {address}");
        assert!(
            (relay_first..=relay_last).contains(&address.port()),
            "{what} names {address}, not a port of the relay ({relay_first}-{relay_last}): \
             the call is not anchored"
        );
        assert_ne!(address.port(), phone, "{what} names the other phone");
    }
    assert_ne!(relay_a, relay_b, "the relay has one port per leg");

    // Every packet of the pcap arrived, from the relay's callee-facing port, in order, with
    // the pcap's payloads.
    let sources: Vec<SocketAddr> = {
        let mut s: Vec<SocketAddr> = received.iter().map(|(source, _)| *source).collect();
        s.dedup();
        s
    };
    assert_eq!(
        sources,
        vec![relay_b],
        "RTP must come from the relay's port offered to the callee ({relay_b}), not from the \
         caller (127.0.0.1:{caller_media})"
    );
    let payloads: Vec<&[u8]> = received
        .iter()
        .map(|(_, packet)| rtp_payload(packet).expect("an RTP packet"))
        .collect();
    let sent: Vec<&[u8]> = expected
        .iter()
        .map(|packet| rtp_payload(packet).expect("an RTP packet in the pcap"))
        .collect();
    eprintln!(
        "RTP through the relay: {} packets in the pcap, {} received by the callee from {relay_b}",
        sent.len(),
        payloads.len()
    );
    assert_eq!(
        payloads.len(),
        sent.len(),
        "packets played vs received through the relay"
    );
    let first_difference = payloads
        .iter()
        .zip(&sent)
        .position(|(got, want)| got != want);
    assert_eq!(
        first_difference, None,
        "the payloads differ from the pcap's from that packet on"
    );
    pbx.assert_cdr(&call_id(&caller), "answered", 200, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_callee_gives_the_caller_486() {
    let pbx = Pbx::start(PbxOptions::default()).await;
    let callee_port = pbx.register("1002").await;
    let callee = pbx.callee("call_uas_busy.xml", callee_port, &[]).await;
    let caller = pbx
        .caller("call_uac_fails.xml", "1001", "1002")
        .key("status", "486");
    let (caller, callee) = run_call(caller, Some(callee)).await;
    assert_one_success(&caller, "caller");
    assert_one_success(&callee.unwrap(), "callee");
    assert_eq!(logged(&caller, "FINAL")[0].split(' ').next(), Some("486"));
    pbx.assert_cdr(&call_id(&caller), "busy", 486, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_gets_480_at_the_ring_timeout() {
    let pbx = Pbx::start(PbxOptions {
        ring_timeout: Some(3),
        ..Default::default()
    })
    .await;
    let callee_port = pbx.register("1002").await;
    let callee = pbx
        .callee("call_uas_ring_cancelled.xml", callee_port, &[])
        .await;
    let caller = pbx
        .caller("call_uac_fails.xml", "1001", "1002")
        .key("status", "480");
    let started = tokio::time::Instant::now();
    let (caller, callee) = run_call(caller, Some(callee)).await;
    let took = started.elapsed();
    let callee = callee.unwrap();
    assert_one_success(&caller, "caller");
    assert_one_success(&callee, "callee");
    assert_eq!(logged(&callee, "CANCELLED").len(), 1, "{}", callee.logs);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "480 after {took:?}, the ring timeout is 3 s"
    );
    pbx.assert_cdr(&call_id(&caller), "no-answer", 480, "")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_ringing_ends_with_487_on_both_sides() {
    let pbx = Pbx::start(PbxOptions::default()).await;
    let callee_port = pbx.register("1002").await;
    let callee = pbx
        .callee("call_uas_ring_cancelled.xml", callee_port, &[])
        .await;
    let caller = pbx.caller("call_uac_cancel.xml", "1001", "1002");
    let (caller, callee) = run_call(caller, Some(callee)).await;
    let callee = callee.unwrap();
    assert_one_success(&caller, "caller");
    assert_one_success(&callee, "callee");
    assert_eq!(
        logged(&caller, "CANCEL answered").len(),
        1,
        "{}",
        caller.logs
    );
    assert_eq!(logged(&callee, "CANCELLED").len(), 1, "{}", callee.logs);
    pbx.assert_cdr(&call_id(&caller), "cancelled", 487, "")
        .await;
    // RFC 3261 §8.2.6.2: one To tag on every response to the INVITE but the 100 (the 180 set
    // up an early dialog, the 487 ends it); §9.2: the CANCEL's 200 should carry it too.
    let tags = logged(&caller, "TO-TAGS");
    assert_eq!(tags.len(), 1, "{}", caller.logs);
    let fields: Vec<&str> = tags[0].split_whitespace().collect();
    let (ringing, cancel_ok, terminated) = (fields[1], fields[3], fields[5]);
    assert_eq!(
        (cancel_ok, terminated),
        (ringing, ringing),
        "the caller's 180, 200 (CANCEL) and 487 must carry one To tag: {}",
        tags[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_are_relayed_to_the_callee_and_answered() {
    let pbx = Pbx::start(PbxOptions::default()).await;
    let callee_port = pbx.register("1002").await;
    let callee = pbx.callee("call_uas_hold.xml", callee_port, &[]).await;
    let caller = pbx.caller("call_uac_hold.xml", "1001", "1002");
    let (caller, callee) = run_call(caller, Some(callee)).await;
    let callee = callee.unwrap();
    assert_one_success(&caller, "caller");
    assert_one_success(&callee, "callee");
    let reinvites = logged(&callee, "REINVITE");
    assert_eq!(
        reinvites,
        vec!["a=sendonly a=sendonly", "a=sendrecv a=sendrecv"],
        "{}",
        callee.logs
    );
    assert_eq!(logged(&caller, "HOLD answered"), vec!["a=recvonly"]);
    assert_eq!(logged(&caller, "RESUME answered"), vec!["a=sendrecv"]);
    pbx.assert_cdr(&call_id(&caller), "answered", 200, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callee_hangs_up_and_the_caller_gets_the_bye() {
    let pbx = Pbx::start(PbxOptions::default()).await;
    let callee_port = pbx.register("1002").await;
    let callee = pbx.callee("call_uas_hangs_up.xml", callee_port, &[]).await;
    let caller = pbx.caller("call_uac_callee_hangs_up.xml", "1001", "1002");
    let (caller, callee) = run_call(caller, Some(callee)).await;
    assert_one_success(&caller, "caller");
    assert_one_success(&callee.unwrap(), "callee");
    pbx.assert_cdr(&call_id(&caller), "answered", 200, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_the_class_of_service_bars_gets_403_with_the_reason() {
    let pbx = Pbx::start(PbxOptions::default()).await;
    // The carrier's address: a socket that must hear nothing.
    let carrier = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    carrier.set_nonblocking(true).unwrap();
    pbx.configure_external_calls(carrier.local_addr().unwrap(), "1001")
        .await;
    let caller = pbx
        .caller("call_uac_fails.xml", "1001", "0044201234567")
        .key("status", "403");
    let (caller, _) = run_call(caller, None).await;
    assert_one_success(&caller, "caller");
    let finals = logged(&caller, "FINAL");
    assert_eq!(finals.len(), 1, "{}", caller.logs);
    assert!(
        finals[0].starts_with("403 ")
            && finals[0].contains("class of service internal")
            && finals[0].contains("international"),
        "the 403's reason names the class of service and the category: {:?}",
        finals[0]
    );
    let mut buf = [0u8; 2048];
    assert!(
        carrier.recv_from(&mut buf).is_err(),
        "a barred call reached the trunk"
    );
    pbx.assert_cdr(
        &call_id(&caller),
        "refused",
        403,
        "class of service internal does not allow international calls",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_call_reaches_the_carrier_although_external_calls_are_barred() {
    let pbx = Pbx::start(PbxOptions::default()).await;
    let carrier_port = free_udp_port();
    pbx.configure_external_calls((Ipv4Addr::LOCALHOST, carrier_port).into(), "1001")
        .await;
    let carrier = pbx
        .callee("carrier_uas.xml", carrier_port, &[("number", "112")])
        .await;
    let caller = pbx
        .caller("call_uac.xml", "1001", "112")
        .arg("-recv_timeout")
        .arg("5000")
        .arg("-default_behaviors")
        .arg("all,-abortunexp");
    let (caller, carrier) = run_call(caller, Some(carrier)).await;
    let carrier = carrier.unwrap();
    assert_one_success(&caller, "caller");
    assert_one_success(&carrier, "carrier");
    let dialled = logged(&carrier, "DIALLED");
    assert_eq!(dialled.len(), 1, "{}", carrier.logs);
    assert!(dialled[0].starts_with("112 "), "{dialled:?}");
    let record = pbx.assert_cdr(&call_id(&caller), "answered", 200, "").await;
    // The number as dialled, and the carrier's trunk that answered it.
    assert_eq!(
        record["callee"].as_str(),
        Some("sip:112@calanque"),
        "{record}"
    );
    assert_eq!(
        record["answered_by"].as_str(),
        Some(format!("sip:112@127.0.0.1:{carrier_port}").as_str()),
        "{record}"
    );
}
