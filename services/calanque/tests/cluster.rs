//! The same call in cluster mode: the directory, the SIP edge and call-control as separate
//! processes (the release binaries an operator deploys) over a real nats-server and a real
//! etcd. Two phones register through the edge and call each other; the callee hangs up.
//! Binaries beside this package's: `cargo test --workspace` builds them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sip_msg::{Method, StatusCode};
use store::Store;
use store::etcd::{EtcdConfig, EtcdStore};
use test_phone::Phone;
use testkit::etcd::EtcdServer;
use testkit::nats::NatsServer;
use tokio::process::{Child, Command};

const REALM: &str = "calanque.test";

fn sibling(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_calanque")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --workspace` builds it (or cargo build --bins)",
        path.display()
    );
    path
}

fn spawn(binary: &str, args: &[&str]) -> Child {
    Command::new(sibling(binary))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// OPTIONS until the edge answers (it is up, with its directory and location loaded).
async fn wait_for_edge(edge: SocketAddr) {
    let probe = Phone::new("probe", "-", REALM, edge).await;
    for i in 0..100 {
        let options = format!(
            "OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-probe{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{REALM}>;tag=p\r\nTo: <sip:{REALM}>\r\n\
             Call-ID: probe-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            probe.local
        );
        probe.send(options.as_bytes()).await;
        if probe.next(Duration::from_millis(200)).await.is_some() {
            return;
        }
    }
    panic!("the edge process never answered OPTIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_separate_edge_and_call_control_processes() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .unwrap()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&EtcdConfig::new([etcd.endpoint()]))
            .await
            .unwrap(),
    );
    test_phone::directory::seed_small_city(&store, REALM).await;

    let sip: SocketAddr = format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap();
    let nonce_key = "11".repeat(32);
    let _edge = spawn(
        "calanque-sip-edge",
        &[
            "--edge-id",
            "edge-a",
            "--listen",
            &format!("udp:{sip}"),
            "--etcd",
            &etcd.endpoint(),
            "--nats",
            &nats.url(),
            "--realm",
            REALM,
            "--nonce-key",
            &nonce_key,
        ],
    );
    let _call_control = spawn(
        "calanque-call-control",
        &[
            "--instance",
            "cc-a",
            "--etcd",
            &etcd.endpoint(),
            "--nats",
            &nats.url(),
            "--domain",
            REALM,
        ],
    );
    wait_for_edge(sip).await;

    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    // call-control reads bindings from its own location cache (etcd watch): give it a moment
    // by retrying the call if the first attempt finds Bob unregistered (480).
    let mut invite = None;
    for attempt in 0..20 {
        alice
            .call("1002", &format!("cluster-{attempt}@alice"))
            .await;
        match tokio::time::timeout(Duration::from_secs(3), async {
            tokio::select! {
                request = bob.request() => Ok(request),
                response = alice.response(false) => Err(response),
            }
        })
        .await
        {
            Ok(Ok(request)) => {
                invite = Some(request);
                break;
            }
            Ok(Err(response)) => {
                assert_eq!(
                    response.status,
                    StatusCode::TEMPORARILY_UNAVAILABLE,
                    "{response:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => panic!("neither the callee rang nor the caller got an answer"),
        }
    }
    let invite = invite.expect("the callee rang");
    assert_eq!(invite.method, Method::Invite);
    bob.reply(&invite, StatusCode::RINGING, "b").await;
    assert_eq!(alice.response(true).await.status, StatusCode::RINGING);
    bob.reply(&invite, StatusCode::OK, "b").await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    // Bob got call-control's ACK; Bob hangs up, Alice gets the BYE.
    assert_eq!(bob.request().await.method, Method::Ack);
    // Bob's BYE goes inside Bob's dialog: From is Bob (the To of the INVITE with our tag).
    let bye_text = {
        let from = format!(
            "{};tag=b",
            invite.headers.get(&sip_msg::HeaderName::To).unwrap()
        );
        let to = invite.headers.get(&sip_msg::HeaderName::From).unwrap();
        let contact = match invite.headers.contacts().unwrap() {
            Some(sip_msg::Contacts::List(list)) => list[0].uri.to_string(),
            _ => panic!("no Contact in the INVITE"),
        };
        format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-bobbye;rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            bob.local,
            invite.headers.call_id().unwrap()
        )
    };
    bob.send(bye_text.as_bytes()).await;
    assert_eq!(bob.response(false).await.status, StatusCode::OK);
    let bye = alice.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), answered.headers.call_id());
}
