//! A phone registering over TLS: the edge's `tls:` listener with a certificate from PEM files
//! (as a Kubernetes Secret mounts them), the full digest exchange on one TLS connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use sip_core::digest::Algorithm;
use sip_edge::config::TlsFiles;
use sip_msg::{Response, SipMessage, Transport};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn read_response<S: AsyncReadExt + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let frame: Vec<u8> = buf.drain(..end + 4 + length).collect();
                match sip_msg::parse_datagram(&frame).unwrap() {
                    SipMessage::Response(r) if r.status.as_u16() >= 200 => return r,
                    _ => continue,
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the edge closed the TLS connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_over_tls() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["edge.calanque.test".into()]).unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let mut config = edge_config("edge-tls");
    config.listen.push("tls:127.0.0.1:0".parse().unwrap());
    config.tls = Some(TlsFiles {
        certificate: cert_path,
        key: key_path,
    });
    let edge = start_edge(config, store, in_process_bus()).await;
    let addr = edge.local_addr(&Transport::Tls).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(certified.cert.der().to_vec()))
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("edge.calanque.test").unwrap(), tcp)
        .await
        .unwrap();

    let register = |cseq: u32, authorization: Option<&str>| {
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-tls{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:user1@{REALM}>;tag=t1\r\nTo: <sip:user1@{REALM}>\r\n\
             Call-ID: tls-1@test\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sips:phone@{local};transport=tls>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = Vec::new();
    tls.write_all(register(1, None).as_bytes()).await.unwrap();
    let challenge = read_response(&mut tls, &mut buf).await;
    assert_eq!(challenge.status.as_u16(), 401);
    let credentials = credentials_for(&challenge, "user1", "pw1", Algorithm::Sha256);
    tls.write_all(register(2, Some(&credentials)).as_bytes())
        .await
        .unwrap();
    let ok = read_response(&mut tls, &mut buf).await;
    assert_eq!(ok.status.as_u16(), 200, "{ok:?}");

    let bindings = edge
        .location()
        .lookup(&format!("sip:user1@{REALM}"), sip_edge::clock::unix_secs());
    assert_eq!(bindings.len(), 1);
    assert_eq!(
        bindings[0].flow.transport,
        proto::v1::SipTransport::Tls as i32
    );
    assert_eq!(bindings[0].flow.remote, local.to_string());
    edge.drain().await;
}
