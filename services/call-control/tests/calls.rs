//! A call end to end through real processes' code paths: two phones (UDP sockets) register
//! through a real edge (etcd-backed location, digest against the directory), the caller's
//! INVITE is challenged (407), handed to call-control over the bus, routed by the dial plan to
//! the callee's extension, sent through the callee's flow, rung, answered, ACKed, and hung up
//! from either side; a busy callee, a barred number and an unknown one get their answers, and
//! call-control keeps no state afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use bus::in_process::InProcessBus;
use call_control::service::{CallControlConfig, start};
use directory::model::{ClassOfService, Device, Entry, Extension, Route, Site, Trunk};
use directory::storage::{encode, entry_key};
use proto::v1;
use sip_core::digest::{Algorithm, ClientSecret, answer, ha1};
use sip_msg::typed::Challenge;
use sip_msg::{HeaderName, Method, Request, Response, SipMessage, StatusCode, build_response};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Op, Store};
use testkit::etcd::EtcdServer;
use tokio::net::UdpSocket;

const REALM: &str = "calanque.test";
const SDP_A: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n";
const SDP_B: &str = "v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n";

fn put(entry: Entry) -> Op {
    Op::Put {
        key: entry_key(&entry.key()),
        value: encode(&entry),
        lease: None,
    }
}

/// One site (1000–1999), extensions 1001–1003 on devices user1–user3, 1003 internal-only, and
/// a national route to a carrier trunk.
async fn seed(store: &Arc<dyn Store>) {
    let site = Site::try_from(v1::Site {
        id: "S-1".into(),
        name: "Town hall".into(),
        number_ranges: vec![v1::NumberRange {
            first: "1000".into(),
            last: "1999".into(),
        }],
        media_policy: v1::MediaPolicy::Direct as i32,
        ..Default::default()
    })
    .unwrap();
    let mut ops = vec![put(Entry::Site(site))];
    for (name, allowed) in [
        ("internal", vec![v1::CallCategory::Internal]),
        (
            "national",
            vec![v1::CallCategory::Internal, v1::CallCategory::National],
        ),
    ] {
        let cos = ClassOfService::try_from(v1::ClassOfService {
            name: name.into(),
            allowed: allowed.into_iter().map(|c| c as i32).collect(),
        })
        .unwrap();
        ops.push(put(Entry::ClassOfService(cos)));
    }
    for i in 1..=3 {
        let user = format!("user{i}");
        let pw = format!("pw{i}");
        let device = Device::try_from(v1::Device {
            id: format!("D-{i}"),
            sip_username: user.clone(),
            site_id: "S-1".into(),
            realm: REALM.into(),
            ha1_md5: ha1(Algorithm::Md5, &user, REALM, &pw).as_hex().into(),
            ha1_sha256: ha1(Algorithm::Sha256, &user, REALM, &pw).as_hex().into(),
            transport: 0,
        })
        .unwrap();
        ops.push(put(Entry::Device(device)));
        let extension = Extension::try_from(v1::Extension {
            number: format!("100{i}"),
            site_id: "S-1".into(),
            display_name: format!("Phone {i}"),
            class_of_service: if i == 3 { "internal" } else { "national" }.into(),
            user_id: String::new(),
            device_ids: vec![format!("D-{i}")],
        })
        .unwrap();
        ops.push(put(Entry::Extension(extension)));
    }
    // A carrier trunk and a national route (0 + 9 digits) to it.
    let trunk = Trunk::try_from(v1::Trunk {
        name: "carrier".into(),
        kind: v1::TrunkKind::Carrier as i32,
        address: "192.0.2.50:5060".into(),
        transport: v1::Transport::Udp as i32,
        ..Default::default()
    })
    .unwrap();
    ops.push(put(Entry::Trunk(trunk)));
    let route = Route::try_from(v1::Route {
        id: "national".into(),
        pattern: "0ZXXXXXXXX".into(),
        target: Some(v1::route::Target::Trunk("carrier".into())),
        priority: 10,
        category: v1::CallCategory::National as i32,
        ..Default::default()
    })
    .unwrap();
    ops.push(put(Entry::Route(route)));
    store.txn(vec![], ops).await.unwrap();
}

/// A phone: a UDP socket that registers and sends/answers requests by hand.
struct Phone {
    socket: UdpSocket,
    local: SocketAddr,
    edge: SocketAddr,
    user: String,
    password: String,
    seq: u32,
}

impl Phone {
    async fn new(i: usize, edge: SocketAddr) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        Phone {
            socket,
            local,
            edge,
            user: format!("user{i}"),
            password: format!("pw{i}"),
            seq: 0,
        }
    }

    fn branch(&mut self) -> String {
        self.seq += 1;
        format!("z9hG4bK-{}-{}", self.user, self.seq)
    }

    async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.edge).await.unwrap();
    }

    async fn next(&self, wait: Duration) -> Option<SipMessage> {
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Ok(message) = sip_msg::parse_datagram(&buf[..n]) {
                return Some(message);
            }
        }
    }

    /// The next final (or, with `provisional`, any non-100) response.
    async fn response(&self, provisional: bool) -> Response {
        loop {
            match self.next(Duration::from_secs(5)).await {
                Some(SipMessage::Response(r))
                    if r.status.as_u16() >= 200 || (provisional && r.status.as_u16() > 100) =>
                {
                    return r;
                }
                Some(_) => continue,
                None => panic!("{}: no response", self.user),
            }
        }
    }

    async fn request(&self) -> Request {
        loop {
            match self.next(Duration::from_secs(5)).await {
                Some(SipMessage::Request(r)) => return r,
                Some(_) => continue,
                None => panic!("{}: no request", self.user),
            }
        }
    }

    fn credentials(&self, challenge: &Response, uri: &str, method: &Method, proxy: bool) -> String {
        let challenges: Vec<Challenge> = if proxy {
            challenge.headers.proxy_authenticate().unwrap()
        } else {
            challenge.headers.www_authenticate().unwrap()
        };
        answer(
            &challenges,
            &self.user,
            ClientSecret::Password(&self.password),
            method,
            uri,
            "0a4f113b",
            1,
        )
        .unwrap()
        .to_string()
    }

    async fn register(&mut self) {
        let mut auth = String::new();
        for cseq in 1..=2 {
            let branch = self.branch();
            let text = format!(
                "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{u}@{REALM}>;tag=r{u}\r\nTo: <sip:{u}@{REALM}>\r\n\
                 Call-ID: reg-{u}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{u}@{}>\r\n{auth}\
                 Expires: 600\r\nContent-Length: 0\r\n\r\n",
                self.local,
                self.local,
                u = self.user
            );
            self.send(text.as_bytes()).await;
            let response = self.response(false).await;
            if response.status == StatusCode::OK {
                return;
            }
            assert_eq!(response.status, StatusCode::UNAUTHORIZED);
            auth = format!(
                "Authorization: {}\r\n",
                self.credentials(&response, &format!("sip:{REALM}"), &Method::Register, false)
            );
        }
        panic!("{} did not register", self.user);
    }

    fn invite_text(&mut self, number: &str, cseq: u32, auth: &str, call_id: &str) -> String {
        let branch = self.branch();
        format!(
            "INVITE sip:{number}@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@{REALM}>;tag=c{u}\r\nTo: <sip:{number}@{REALM}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{u}@{}>\r\n{auth}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_A}",
            self.local,
            self.local,
            SDP_A.len(),
            u = self.user
        )
    }

    /// Calls `number`: answers the 407 and returns the INVITE that was authorized.
    async fn call(&mut self, number: &str, call_id: &str) -> String {
        let first = self.invite_text(number, 1, "", call_id);
        self.send(first.as_bytes()).await;
        let challenge = self.response(false).await;
        assert_eq!(
            challenge.status,
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "{challenge:?}"
        );
        // ACK the 407 (same branch as the first INVITE: a non-2xx ACK).
        let auth = format!(
            "Proxy-Authorization: {}\r\n",
            self.credentials(
                &challenge,
                &format!("sip:{number}@{REALM}"),
                &Method::Invite,
                true
            )
        );
        let second = self.invite_text(number, 2, &auth, call_id);
        self.send(second.as_bytes()).await;
        second
    }
}

struct Setup {
    _etcd: EtcdServer,
    edge: sip_edge::EdgeHandle,
    _cc: call_control::service::CallControlHandle,
}

async fn setup() -> Setup {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&EtcdConfig::new([etcd.endpoint()]))
            .await
            .unwrap(),
    );
    seed(&store).await;
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(Default::default()));
    let mut config = sip_edge::EdgeConfig::new("edge-1", REALM, [9; 32]);
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    let edge = sip_edge::start(config, store.clone(), bus.clone())
        .await
        .unwrap();
    let cc = start(
        CallControlConfig {
            instance: "cc-1".into(),
            domain: REALM.into(),
            ring_timeout: Duration::from_secs(30),
        },
        store,
        bus,
    )
    .await
    .unwrap();
    Setup {
        _etcd: etcd,
        edge,
        _cc: cc,
    }
}

fn edge_addr(setup: &Setup) -> SocketAddr {
    setup.edge.local_addr(&sip_msg::Transport::Udp).unwrap()
}

/// The in-dialog request a phone sends on the dialog of `response` (ACK, BYE).
fn in_dialog(phone: &mut Phone, response: &Response, method: &str, cseq: u32) -> String {
    let to = response.headers.get(&HeaderName::To).unwrap();
    let from = response.headers.get(&HeaderName::From).unwrap();
    let call_id = response.headers.call_id().unwrap();
    let target = match response.headers.contacts().unwrap() {
        Some(sip_msg::Contacts::List(list)) => list[0].uri.to_string(),
        _ => panic!("no Contact in {response:?}"),
    };
    let branch = phone.branch();
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        phone.local
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_two_phones_rings_connects_and_hangs_up() {
    let setup = setup().await;
    let mut alice = Phone::new(1, edge_addr(&setup)).await;
    let mut bob = Phone::new(2, edge_addr(&setup)).await;
    alice.register().await;
    bob.register().await;

    alice.call("1002", "call-1@alice").await;
    // Bob's phone rings: the INVITE comes from the edge, to Bob's registered address.
    let invite = bob.request().await;
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(
        invite.body.as_ref(),
        SDP_A.as_bytes(),
        "the offer reaches the callee"
    );
    let ringing = build_response(&invite, StatusCode::RINGING, Some("bob1"));
    bob.send(&ringing.to_bytes()).await;
    let r = alice.response(true).await;
    assert_eq!(r.status, StatusCode::RINGING);
    let mut ok = build_response(&invite, StatusCode::OK, Some("bob1"));
    ok.headers
        .push(HeaderName::Contact, format!("<sip:user2@{}>", bob.local));
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.headers
        .set(HeaderName::ContentLength, SDP_B.len().to_string());
    ok.body = bytes::Bytes::from_static(SDP_B.as_bytes());
    bob.send(&ok.to_bytes()).await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(
        answered.body.as_ref(),
        SDP_B.as_bytes(),
        "the answer reaches the caller"
    );
    // Bob gets the ACK of his 200.
    let ack = bob.request().await;
    assert_eq!(ack.method, Method::Ack);
    // Alice ACKs, then hangs up; Bob gets the BYE.
    let ack = in_dialog(&mut alice, &answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    let bye = in_dialog(&mut alice, &answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    let bye_ok = alice.response(false).await;
    assert_eq!(bye_ok.status, StatusCode::OK);
    let bye = bob.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), invite.headers.call_id());
    bob.send(&build_response(&bye, StatusCode::OK, None).to_bytes())
        .await;
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_barred_and_unknown_numbers_get_their_answers() {
    let setup = setup().await;
    let mut alice = Phone::new(1, edge_addr(&setup)).await;
    let mut bob = Phone::new(2, edge_addr(&setup)).await;
    let mut carol = Phone::new(3, edge_addr(&setup)).await;
    alice.register().await;
    bob.register().await;
    carol.register().await;

    // Busy.
    alice.call("1002", "call-busy@alice").await;
    let invite = bob.request().await;
    bob.send(&build_response(&invite, StatusCode::BUSY_HERE, Some("b")).to_bytes())
        .await;
    assert_eq!(alice.response(false).await.status, StatusCode::BUSY_HERE);

    // Unknown number.
    alice.call("1999", "call-unknown@alice").await;
    assert_eq!(alice.response(false).await.status, StatusCode::NOT_FOUND);

    // Carol is internal-only: a national number is barred, with the reason.
    carol.call("0123456789", "call-barred@carol").await;
    let barred = carol.response(false).await;
    assert_eq!(barred.status, StatusCode::FORBIDDEN, "{barred:?}");
    assert!(
        barred.reason.contains("internal"),
        "the reason names the class of service: {}",
        barred.reason
    );
    // Alice may call nationally, but trunks are not connected yet: 503, said so.
    alice.call("0123456789", "call-national@alice").await;
    let national = alice.response(false).await;
    assert_eq!(
        national.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{national:?}"
    );

    // Carol's extension is registered nowhere else; calling 1003 from Alice rings Carol.
    alice.call("1003", "call-carol@alice").await;
    let invite = carol.request().await;
    assert_eq!(invite.method, Method::Invite);
    carol
        .send(&build_response(&invite, StatusCode::DECLINE, Some("c")).to_bytes())
        .await;
    assert_eq!(alice.response(false).await.status, StatusCode::DECLINE);
    setup.edge.drain().await;
}
