//! Shared by the edge's integration tests: a real etcd, devices seeded in the directory's
//! store layout, an edge started in-process on free loopback ports, and a small SIP client
//! over UDP/TCP that answers digest challenges (RFC 7616) with `sip_core::digest`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use bus::in_process::InProcessBus;
use directory::model::{Device, Entry, Site};
use directory::storage::{encode, entry_key};
use proto::v1;
use sip_core::digest::{Algorithm, ClientSecret, answer, ha1};
use sip_edge::{EdgeConfig, EdgeHandle};
use sip_msg::typed::Challenge;
use sip_msg::{HeaderName, Method, Response, SipMessage, Transport, Uri};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Op, Store};
use testkit::etcd::EtcdServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const REALM: &str = "calanque.test";
pub const NONCE_KEY: [u8; 32] = [7u8; 32];

pub fn username(i: usize) -> String {
    format!("user{i}")
}

pub fn password(i: usize) -> String {
    format!("pw{i}")
}

/// A real etcd and a store client on it.
pub async fn etcd() -> (EtcdServer, Arc<dyn Store>) {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
    let store = EtcdStore::connect(&EtcdConfig::new([server.endpoint()]))
        .await
        .unwrap();
    (server, Arc::new(store))
}

pub fn in_process_bus() -> Arc<dyn Bus> {
    Arc::new(InProcessBus::new(Default::default()))
}

/// Writes one site and devices `user<i>` / `pw<i>` for `range` into the directory's keys.
pub async fn seed_devices(store: &Arc<dyn Store>, range: std::ops::Range<usize>) {
    let site = Site::try_from(v1::Site {
        id: "S-1".into(),
        name: "Test site".into(),
        number_ranges: vec![v1::NumberRange {
            first: "1000".into(),
            last: "1999".into(),
        }],
        media_policy: v1::MediaPolicy::Relay as i32,
        ..Default::default()
    })
    .unwrap();
    let mut ops = vec![put(Entry::Site(site))];
    for i in range {
        let user = username(i);
        let pw = password(i);
        let device = Device::try_from(v1::Device {
            id: format!("D-{i}"),
            sip_username: user.clone(),
            site_id: "S-1".into(),
            realm: REALM.into(),
            ha1_md5: ha1(Algorithm::Md5, &user, REALM, &pw).as_hex().to_owned(),
            ha1_sha256: ha1(Algorithm::Sha256, &user, REALM, &pw)
                .as_hex()
                .to_owned(),
            transport: 0,
        })
        .unwrap();
        ops.push(put(Entry::Device(device)));
        if ops.len() >= 1000 {
            store.txn(vec![], std::mem::take(&mut ops)).await.unwrap();
        }
    }
    if !ops.is_empty() {
        store.txn(vec![], ops).await.unwrap();
    }
}

fn put(entry: Entry) -> Op {
    Op::Put {
        key: entry_key(&entry.key()),
        value: encode(&entry),
        lease: None,
    }
}

/// An edge config listening on UDP and TCP on free loopback ports.
pub fn edge_config(edge_id: &str) -> EdgeConfig {
    let mut config = EdgeConfig::new(edge_id, REALM, NONCE_KEY);
    config.listen = vec![
        "udp:127.0.0.1:0".parse().unwrap(),
        "tcp:127.0.0.1:0".parse().unwrap(),
    ];
    config.domain = REALM.into();
    config
}

pub async fn start_edge(
    config: EdgeConfig,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
) -> EdgeHandle {
    let edge = sip_edge::start(config, store, bus).await.unwrap();
    // The directory cache loads at start; nothing else to wait for.
    edge
}

pub fn udp_addr(edge: &EdgeHandle) -> SocketAddr {
    edge.local_addr(&Transport::Udp).unwrap()
}

pub fn tcp_addr(edge: &EdgeHandle) -> SocketAddr {
    edge.local_addr(&Transport::Tcp).unwrap()
}

/// A SIP user agent for tests, over UDP or one TCP connection.
pub struct Client {
    transport: Transport,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    tcp_buf: Vec<u8>,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    branch_seq: u32,
}

impl Client {
    pub async fn udp(server: SocketAddr) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        Client::new(Transport::Udp, Some(socket), None, local, server)
    }

    pub async fn tcp(server: SocketAddr) -> Client {
        let stream = TcpStream::connect(server).await.unwrap();
        let local = stream.local_addr().unwrap();
        Client::new(Transport::Tcp, None, Some(stream), local, server)
    }

    fn new(
        transport: Transport,
        udp: Option<UdpSocket>,
        tcp: Option<TcpStream>,
        local: SocketAddr,
        server: SocketAddr,
    ) -> Client {
        Client {
            transport,
            udp,
            tcp,
            tcp_buf: Vec::new(),
            local,
            server,
            call_id: format!("{:016x}@test", rand::random::<u64>()),
            cseq: 1,
            branch_seq: 0,
        }
    }

    fn via_transport(&self) -> &'static str {
        if self.transport == Transport::Tcp {
            "TCP"
        } else {
            "UDP"
        }
    }

    /// A REGISTER for `user` with these extra headers (Contact, Expires, Authorization …).
    pub fn register_text(&mut self, user: &str, extra: &[String]) -> String {
        self.branch_seq += 1;
        let mut text = format!(
            "REGISTER sip:{REALM} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch=z9hG4bK-{:x}-{}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{REALM}>;tag=from{}\r\n\
             To: <sip:{user}@{REALM}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n",
            self.via_transport(),
            self.local,
            rand::random::<u32>(),
            self.branch_seq,
            self.branch_seq,
            self.call_id,
            self.cseq,
        );
        self.cseq += 1;
        for header in extra {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        text
    }

    pub fn contact(&self) -> String {
        let transport = if self.transport == Transport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        format!("<sip:phone@{}{transport}>", self.local)
    }

    pub async fn send(&mut self, text: &str) {
        match self.transport {
            Transport::Tcp => self
                .tcp
                .as_mut()
                .unwrap()
                .write_all(text.as_bytes())
                .await
                .unwrap(),
            _ => {
                self.udp
                    .as_ref()
                    .unwrap()
                    .send_to(text.as_bytes(), self.server)
                    .await
                    .unwrap();
            }
        }
    }

    /// The UDP socket (a UDP client only), to act as the phone in tests.
    pub fn udp_socket(&self) -> &UdpSocket {
        self.udp.as_ref().expect("a UDP client")
    }

    /// The TCP connection (a TCP client only).
    pub fn tcp_stream(&mut self) -> &mut TcpStream {
        self.tcp.as_mut().expect("a TCP client")
    }

    /// The next datagram of any kind (UDP clients only); `None` after `wait`.
    pub async fn raw_datagram(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65535];
        let socket = self.udp.as_ref()?;
        let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// The next response, skipping 1xx; `None` after `wait`.
    pub async fn final_response(&mut self, wait: Duration) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let response = tokio::time::timeout(remaining, self.receive())
                .await
                .ok()??;
            if response.status.as_u16() >= 200 {
                return Some(response);
            }
        }
    }

    async fn receive(&mut self) -> Option<Response> {
        match self.transport {
            Transport::Tcp => loop {
                if let Some(end) = find(&self.tcp_buf, b"\r\n\r\n") {
                    let head = std::str::from_utf8(&self.tcp_buf[..end]).ok()?;
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            (name.eq_ignore_ascii_case("content-length") || name == "l")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let total = end + 4 + length;
                    if self.tcp_buf.len() >= total {
                        let frame: Vec<u8> = self.tcp_buf.drain(..total).collect();
                        if let Ok(SipMessage::Response(r)) = sip_msg::parse_datagram(&frame) {
                            return Some(r);
                        }
                        continue;
                    }
                }
                let mut buf = [0u8; 8192];
                let n = self.tcp.as_mut()?.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                self.tcp_buf.extend_from_slice(&buf[..n]);
            },
            _ => loop {
                let mut buf = vec![0u8; 65535];
                let (n, _) = self.udp.as_ref()?.recv_from(&mut buf).await.ok()?;
                if let Ok(SipMessage::Response(r)) = sip_msg::parse_datagram(&buf[..n]) {
                    return Some(r);
                }
            },
        }
    }

    /// Sends a REGISTER, answers the 401 with `password` using the first offered challenge
    /// of `algorithm`, and returns the final response to the authenticated request.
    pub async fn register(
        &mut self,
        user: &str,
        password: &str,
        algorithm: Algorithm,
        extra: &[String],
    ) -> Response {
        let first = self.register_text(user, extra);
        self.send(&first).await;
        let challenge = self
            .final_response(Duration::from_secs(5))
            .await
            .expect("an answer to the unauthenticated REGISTER");
        if challenge.status.as_u16() != 401 {
            return challenge;
        }
        self.answer_challenge(&challenge, user, password, algorithm, extra)
            .await
    }

    /// Answers a 401 with credentials for `algorithm`.
    pub async fn answer_challenge(
        &mut self,
        challenge: &Response,
        user: &str,
        password: &str,
        algorithm: Algorithm,
        extra: &[String],
    ) -> Response {
        let credentials = credentials_for(challenge, user, password, algorithm);
        let mut headers = extra.to_vec();
        headers.push(format!("Authorization: {credentials}"));
        let second = self.register_text(user, &headers);
        self.send(&second).await;
        self.final_response(Duration::from_secs(5))
            .await
            .expect("an answer to the authenticated REGISTER")
    }
}

/// Credentials answering the challenge of `algorithm` in a 401.
pub fn credentials_for(
    challenge: &Response,
    user: &str,
    password: &str,
    algorithm: Algorithm,
) -> String {
    let challenges: Vec<Challenge> = challenge
        .headers
        .www_authenticate()
        .unwrap()
        .into_iter()
        .filter(|c| c.params.get("algorithm") == Some(algorithm.as_str()))
        .collect();
    assert!(!challenges.is_empty(), "no {algorithm:?} challenge offered");
    answer(
        &challenges,
        user,
        ClientSecret::Password(password),
        &Method::Register,
        &format!("sip:{REALM}"),
        &format!("{:08x}", rand::random::<u32>()),
        1,
    )
    .unwrap()
    .to_string()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Contact URIs listed in a 200 to REGISTER.
pub fn contacts(response: &Response) -> Vec<String> {
    match response.headers.contacts().ok().flatten() {
        Some(sip_msg::Contacts::List(list)) => list.iter().map(|c| c.uri.to_string()).collect(),
        _ => Vec::new(),
    }
}

pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.get(&HeaderName::from_wire(name))
}

pub fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap()
}

/// A REGISTER without credentials (a new exchange) for `label{n}`, sent over TCP from `local`:
/// the bursts of the overload and pipelining tests. Its branch is `z9hG4bK-{label}-{n}-…`.
pub fn new_tcp_register(local: SocketAddr, label: &str, n: usize) -> String {
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-{label}-{n}-{:x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{label}{n}@{REALM}>;tag={label}{n}\r\n\
         To: <sip:{label}{n}@{REALM}>\r\n\
         Call-ID: {label}-{n}-{local}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{label}{n}@{local};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n",
        rand::random::<u32>()
    )
}
