//! A scripted SIP phone for integration tests, over UDP on loopback: registers with digest
//! (RFC 7616 through `sip_core::digest`), places calls answering the proxy's 407, receives
//! requests, answers them, and sends in-dialog ACK/BYE. Every wait is bounded; a missing
//! message panics with the phone's name, which is what a test wants.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod directory;
pub mod fleet;

use std::net::SocketAddr;
use std::time::Duration;

use sip_core::digest::{ClientSecret, answer};
use sip_msg::typed::Challenge;
use sip_msg::{HeaderName, Method, Request, Response, SipMessage, StatusCode, build_response};
use tokio::net::UdpSocket;

/// An SDP offer a test phone sends (G.711 µ-law and A-law on port 40000).
pub const SDP_OFFER: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n";
/// An SDP answer a test phone sends (µ-law on port 41000).
pub const SDP_ANSWER: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n";

/// A phone: a UDP socket, credentials, and the server it talks to.
#[derive(Debug)]
pub struct Phone {
    socket: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub user: String,
    password: String,
    realm: String,
    seq: u32,
    /// The CSeq of the last REGISTER: it grows across registrations (same Call-ID, RFC 3261
    /// §10.2: a registrar refuses one that goes back).
    register_cseq: u32,
}

impl Phone {
    /// A phone for `user`/`password` in `realm` (also the SIP domain), talking to `server`.
    pub async fn new(user: &str, password: &str, realm: &str, server: SocketAddr) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        Phone {
            socket,
            local,
            server,
            user: user.into(),
            password: password.into(),
            realm: realm.into(),
            seq: 0,
            register_cseq: 0,
        }
    }

    fn branch(&mut self) -> String {
        self.seq += 1;
        format!("z9hG4bK-{}-{}", self.user, self.seq)
    }

    /// Sends raw bytes to the server.
    pub async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next SIP message within `wait`.
    pub async fn next(&self, wait: Duration) -> Option<SipMessage> {
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

    /// The next final response (or, with `provisional`, the next one above 100).
    pub async fn response(&self, provisional: bool) -> Response {
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

    /// The next request.
    pub async fn request(&self) -> Request {
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

    /// Registers (answering the 401); panics unless it gets 200.
    pub async fn register(&mut self) {
        let mut auth = String::new();
        for _ in 1..=2 {
            self.register_cseq += 1;
            let cseq = self.register_cseq;
            let branch = self.branch();
            let text = format!(
                "REGISTER sip:{r} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{u}@{r}>;tag=r{u}\r\nTo: <sip:{u}@{r}>\r\n\
                 Call-ID: reg-{u}-{l}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{u}@{l}>\r\n{auth}\
                 Expires: 600\r\nContent-Length: 0\r\n\r\n",
                l = self.local,
                u = self.user,
                r = self.realm,
            );
            self.send(text.as_bytes()).await;
            let response = self.response(false).await;
            if response.status == StatusCode::OK {
                return;
            }
            assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{response:?}");
            let uri = format!("sip:{}", self.realm);
            auth = format!(
                "Authorization: {}\r\n",
                self.credentials(&response, &uri, &Method::Register, false)
            );
        }
        panic!("{} did not register", self.user);
    }

    fn invite_text_with(
        &mut self,
        number: &str,
        cseq: u32,
        auth: &str,
        call_id: &str,
        sdp: &str,
    ) -> String {
        let branch = self.branch();
        format!(
            "INVITE sip:{number}@{r} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@{r}>;tag=c{u}\r\nTo: <sip:{number}@{r}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{u}@{l}>\r\n{auth}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            l = self.local,
            u = self.user,
            r = self.realm,
        )
    }

    /// Calls `number`: sends the INVITE, answers the 407 with credentials. The caller then
    /// reads the provisional and final responses with [`Phone::response`].
    pub async fn call(&mut self, number: &str, call_id: &str) {
        self.call_with_sdp(number, call_id, SDP_OFFER).await;
    }

    /// [`Phone::call`] with this SDP offer.
    pub async fn call_with_sdp(&mut self, number: &str, call_id: &str, sdp: &str) {
        let first = self.invite_text_with(number, 1, "", call_id, sdp);
        self.send(first.as_bytes()).await;
        let challenge = self.response(false).await;
        assert_eq!(
            challenge.status,
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "{challenge:?}"
        );
        // ACK the 407 (§17.1.1.3: same branch and CSeq number, the response's To), or the
        // proxy keeps retransmitting it.
        let ack = format!(
            "ACK sip:{number}@{r} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            r = self.realm,
            via = challenge.headers.get(&HeaderName::Via).unwrap(),
            from = challenge.headers.get(&HeaderName::From).unwrap(),
            to = challenge.headers.get(&HeaderName::To).unwrap(),
        );
        self.send(ack.as_bytes()).await;
        let uri = format!("sip:{number}@{}", self.realm);
        let auth = format!(
            "Proxy-Authorization: {}\r\n",
            self.credentials(&challenge, &uri, &Method::Invite, true)
        );
        let second = self.invite_text_with(number, 2, &auth, call_id, sdp);
        self.send(second.as_bytes()).await;
    }

    /// Answers `request` with `status` (our tag), adding a Contact and the SDP answer to 2xx.
    pub async fn reply(&self, request: &Request, status: StatusCode, tag: &str) {
        self.reply_with_sdp(request, status, tag, SDP_ANSWER).await;
    }

    /// [`Phone::reply`] with this SDP answer.
    pub async fn reply_with_sdp(
        &self,
        request: &Request,
        status: StatusCode,
        tag: &str,
        sdp: &str,
    ) {
        let mut response = build_response(request, status, Some(tag));
        if status == StatusCode::OK && request.method == Method::Invite {
            answer_with_sdp(&mut response, &self.user, self.local, sdp);
        }
        self.send(&response.to_bytes()).await;
    }

    /// An in-dialog request (ACK, BYE) on the dialog `response` established, to its Contact.
    pub fn in_dialog(&mut self, response: &Response, method: &str, cseq: u32) -> String {
        let to = response.headers.get(&HeaderName::To).unwrap();
        let from = response.headers.get(&HeaderName::From).unwrap();
        let call_id = response.headers.call_id().unwrap();
        let target = match response.headers.contacts().unwrap() {
            Some(sip_msg::Contacts::List(list)) => list[0].uri.to_string(),
            _ => panic!("no Contact in {response:?}"),
        };
        let branch = self.branch();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.local
        )
    }
}

/// Makes `response` a phone's answer with an SDP body: its Contact (`user` at `local`) and the
/// body.
pub fn answer_with_sdp(response: &mut Response, user: &str, local: SocketAddr, sdp: &str) {
    response
        .headers
        .push(HeaderName::Contact, format!("<sip:{user}@{local}>"));
    response
        .headers
        .push(HeaderName::ContentType, "application/sdp");
    response
        .headers
        .set(HeaderName::ContentLength, sdp.len().to_string());
    response.body = bytes::Bytes::from(sdp.to_owned());
}
