//! The edge as a registrar, end to end over real sockets with a real etcd: digest with MD5
//! and SHA-256, several contacts, unregistration, wrong passwords answered like unknown
//! users, two edges sharing one etcd, bindings expiring by themselves, OPTIONS, TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sip_core::digest::Algorithm;
use support::*;

fn contact_header(client: &Client) -> String {
    format!("Contact: {}", client.contact())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_md5_and_sha256_and_lists_every_contact() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..3).await;
    let edge = start_edge(edge_config("edge-1"), store.clone(), in_process_bus()).await;

    for (i, algorithm) in [(1, Algorithm::Md5), (2, Algorithm::Sha256)] {
        let mut phone = Client::udp(udp_addr(&edge)).await;
        let contact = contact_header(&phone);
        let ok = phone
            .register(
                &username(i),
                &password(i),
                algorithm,
                &[contact, "Expires: 600".into()],
            )
            .await;
        assert_eq!(ok.status.as_u16(), 200, "{algorithm:?}: {ok:?}");
        let listed = contacts(&ok);
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].contains(&phone.local.to_string()));
        let aor = format!("sip:{}@{REALM}", username(i));
        let bindings = edge.location().lookup(&aor, sip_edge::clock::unix_secs());
        assert_eq!(bindings.len(), 1);
    }

    // A second contact for user1 from another phone: the 200 lists both.
    let mut desk = Client::udp(udp_addr(&edge)).await;
    let contact = contact_header(&desk);
    let ok = desk
        .register(
            &username(1),
            &password(1),
            Algorithm::Md5,
            &[contact, "Expires: 600".into()],
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200);
    assert_eq!(contacts(&ok).len(), 2, "{ok:?}");

    // Unregister one contact with Expires 0: the other stays.
    let contact = contact_header(&desk);
    let ok = desk
        .register(
            &username(1),
            &password(1),
            Algorithm::Md5,
            &[contact, "Expires: 0".into()],
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200);
    assert_eq!(contacts(&ok).len(), 1, "{ok:?}");

    // `Contact: *` with Expires 0 removes the rest.
    let ok = desk
        .register(
            &username(1),
            &password(1),
            Algorithm::Md5,
            &["Contact: *".into(), "Expires: 0".into()],
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200);
    assert!(contacts(&ok).is_empty(), "{ok:?}");
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_users_get_the_same_fresh_challenge() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let edge = start_edge(edge_config("edge-1"), store, in_process_bus()).await;

    let mut phone = Client::udp(udp_addr(&edge)).await;
    let contact = contact_header(&phone);
    let wrong = phone
        .register(
            &username(1),
            "not-the-password",
            Algorithm::Md5,
            std::slice::from_ref(&contact),
        )
        .await;
    let mut stranger = Client::udp(udp_addr(&edge)).await;
    let unknown = stranger
        .register("nobody", "whatever", Algorithm::Md5, &[contact])
        .await;
    for response in [&wrong, &unknown] {
        assert_eq!(response.status.as_u16(), 401, "{response:?}");
        let challenges = response.headers.www_authenticate().unwrap();
        let algorithms: Vec<_> = challenges
            .iter()
            .map(|c| c.params.get("algorithm").unwrap().to_owned())
            .collect();
        assert_eq!(algorithms, ["SHA-256", "MD5"]);
        assert!(challenges.iter().all(|c| c.params.get("stale").is_none()));
    }
    assert_eq!(wrong.reason, unknown.reason);
    assert_eq!(wrong.headers.len(), unknown.headers.len());
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_nonce_gets_stale_true_and_a_short_interval_gets_423() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let mut config = edge_config("edge-1");
    config.nonce_lifetime = Duration::from_secs(1);
    let edge = start_edge(config, store, in_process_bus()).await;

    let mut phone = Client::udp(udp_addr(&edge)).await;
    let contact = contact_header(&phone);
    let first = phone.register_text(&username(1), std::slice::from_ref(&contact));
    phone.send(&first).await;
    let challenge = phone.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(challenge.status.as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = phone
        .answer_challenge(
            &challenge,
            &username(1),
            &password(1),
            Algorithm::Md5,
            std::slice::from_ref(&contact),
        )
        .await;
    assert_eq!(stale.status.as_u16(), 401);
    let challenges = stale.headers.www_authenticate().unwrap();
    assert!(
        challenges
            .iter()
            .all(|c| c.params.get("stale") == Some("true")),
        "{stale:?}"
    );
    // Answering the fresh challenge at once works.
    let ok = phone
        .answer_challenge(
            &stale,
            &username(1),
            &password(1),
            Algorithm::Md5,
            std::slice::from_ref(&contact),
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{ok:?}");

    let brief = phone
        .register(
            &username(1),
            &password(1),
            Algorithm::Md5,
            &[contact, "Expires: 5".into()],
        )
        .await;
    assert_eq!(brief.status.as_u16(), 423, "{brief:?}");
    assert_eq!(header(&brief, "Min-Expires"), Some("60"));
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_share_bindings_and_a_binding_expires_by_itself() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let mut config = edge_config("edge-1");
    config.registrar.min_expires = 2;
    config.location.lease_bucket = Duration::from_secs(1);
    let edge1 = start_edge(config.clone(), store.clone(), in_process_bus()).await;
    config.edge_id = "edge-2".into();
    let edge2 = start_edge(config, store.clone(), in_process_bus()).await;

    let mut phone = Client::udp(udp_addr(&edge1)).await;
    let contact = contact_header(&phone);
    let ok = phone
        .register(
            &username(1),
            &password(1),
            Algorithm::Sha256,
            &[contact, "Expires: 3".into()],
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{ok:?}");

    let aor = format!("sip:{}@{REALM}", username(1));
    let seen = wait_until(Duration::from_secs(5), || {
        !edge2
            .location()
            .lookup(&aor, sip_edge::clock::unix_secs())
            .is_empty()
    })
    .await;
    assert!(seen, "edge 2 never saw the binding made through edge 1");
    let found = edge2.location().lookup(&aor, sip_edge::clock::unix_secs());
    assert_eq!(found[0].flow.edge_id, "edge-1");
    assert_eq!(found[0].flow.remote, phone.local.to_string());

    // Nobody refreshes it: the store's lease removes it (bucket 1 s, a few seconds of slack).
    let key_prefix = "calanque/v1/location/";
    let gone = wait_until_async(Duration::from_secs(20), || async {
        store.list_prefix(key_prefix).await.unwrap().0.is_empty()
    })
    .await;
    assert!(gone, "the expired binding is still in etcd");
    let emptied = wait_until(Duration::from_secs(5), || edge2.location().is_empty()).await;
    assert!(emptied, "edge 2 still caches the expired binding");
    edge1.drain().await;
    edge2.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_tcp_and_answers_options() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let edge = start_edge(edge_config("edge-1"), store, in_process_bus()).await;

    let mut phone = Client::tcp(tcp_addr(&edge)).await;
    let contact = contact_header(&phone);
    let ok = phone
        .register(&username(1), &password(1), Algorithm::Md5, &[contact])
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{ok:?}");
    let aor = format!("sip:{}@{REALM}", username(1));
    let binding = edge.location().lookup(&aor, sip_edge::clock::unix_secs());
    assert_eq!(
        binding[0].flow.transport,
        proto::v1::SipTransport::Tcp as i32
    );

    let mut probe = Client::udp(udp_addr(&edge)).await;
    let options = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-opt1\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{REALM}>;tag=p1\r\nTo: <sip:{}>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        udp_addr(&edge),
        probe.local,
        udp_addr(&edge)
    );
    probe.send(&options).await;
    let ok = probe.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ok.status.as_u16(), 200);
    assert!(header(&ok, "Allow").unwrap().contains("REGISTER"));
    edge.drain().await;
}

async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

async fn wait_until_async<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    condition().await
}
