//! A fleet of phones that behave like desk phones with a primary and a backup proxy, for the
//! failure tests (issue 8): each registers with the first server, pings it with OPTIONS, and
//! moves to the next server (registering there) after `misses` unanswered pings or a failed
//! registration. A phone away from its primary goes back to it when it answers again, as desk
//! phones fail back to their primary proxy ([`Failback`]): all the phones of a returning
//! datacenter re-register there at once. Phones come in pairs: the first of each pair calls
//! the second again and again, holds the call with RTP both ways (20 ms packets to the address
//! the SDP names, following re-INVITEs), and hangs up; a set-up still ringing after 40 s is
//! given up (CANCEL, a failed set-up): the server handling it was lost.
//!
//! Every phone writes what happens as JSON lines ([`Event`]) to one channel: the scenario reads
//! them to measure recovery time, dropped calls and lost registrations. A call is *dropped*
//! when the network ends it (a BYE the phone did not expect) or its hang-up fails (481, or no
//! answer): the phones did not want it to end.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sip_core::digest::{ClientSecret, answer};
use sip_msg::{HeaderName, Method, Request, Response, SipMessage, StatusCode, build_response};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What one fleet does.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The SIP servers, primary first (UDP).
    pub servers: Vec<SocketAddr>,
    pub realm: String,
    /// The address the phones bind (SIP and RTP sockets).
    pub bind_ip: IpAddr,
    /// (SIP username, password, extension) of each phone; pairs call each other.
    pub phones: Vec<(String, String, String)>,
    /// Registration expiry asked (refreshed at half).
    pub register_expires: u32,
    /// OPTIONS ping period, and how many unanswered pings move the phone to the next server.
    pub keepalive: Duration,
    pub misses: u32,
    /// How long a call is held, and the pause before the next.
    pub hold: Duration,
    pub pause: Duration,
    /// The fleet stops making calls after this; calls in progress are hung up.
    pub duration: Duration,
}

/// Something that happened to a phone, at `t` ms since the fleet started.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Registered {
        phone: String,
        server: SocketAddr,
    },
    RegisterFailed {
        phone: String,
        server: SocketAddr,
        status: u16,
    },
    /// The phone moved to another server.
    Moved {
        phone: String,
        from: SocketAddr,
        to: SocketAddr,
    },
    CallAttempt {
        call: String,
    },
    CallAnswered {
        call: String,
    },
    CallFailed {
        call: String,
        status: u16,
    },
    /// A new offer from the network moved the call's media (ADR 0020).
    Reoffered {
        call: String,
        phone: String,
    },
    /// The caller hung up and both ends agreed; `longest_silence_ms` is the longest gap in the
    /// caller's received RTP while the call lasted.
    CallEnded {
        call: String,
        longest_silence_ms: u64,
    },
    /// The network ended the call, or its hang-up failed.
    CallDropped {
        call: String,
        why: String,
    },
}

impl Event {
    /// One JSON object.
    pub fn to_json(&self, t_ms: u64) -> String {
        let s = |v: &str| format!("{v:?}");
        match self {
            Event::Registered { phone, server } => format!(
                r#"{{"t":{t_ms},"ev":"registered","phone":{},"server":"{server}"}}"#,
                s(phone)
            ),
            Event::RegisterFailed {
                phone,
                server,
                status,
            } => format!(
                r#"{{"t":{t_ms},"ev":"register_failed","phone":{},"server":"{server}","status":{status}}}"#,
                s(phone)
            ),
            Event::Moved { phone, from, to } => format!(
                r#"{{"t":{t_ms},"ev":"moved","phone":{},"from":"{from}","to":"{to}"}}"#,
                s(phone)
            ),
            Event::CallAttempt { call } => {
                format!(r#"{{"t":{t_ms},"ev":"call_attempt","call":{}}}"#, s(call))
            }
            Event::CallAnswered { call } => {
                format!(r#"{{"t":{t_ms},"ev":"call_answered","call":{}}}"#, s(call))
            }
            Event::CallFailed { call, status } => format!(
                r#"{{"t":{t_ms},"ev":"call_failed","call":{},"status":{status}}}"#,
                s(call)
            ),
            Event::Reoffered { call, phone } => format!(
                r#"{{"t":{t_ms},"ev":"reoffered","call":{},"phone":{}}}"#,
                s(call),
                s(phone)
            ),
            Event::CallEnded {
                call,
                longest_silence_ms,
            } => format!(
                r#"{{"t":{t_ms},"ev":"call_ended","call":{},"silence_ms":{longest_silence_ms}}}"#,
                s(call)
            ),
            Event::CallDropped { call, why } => format!(
                r#"{{"t":{t_ms},"ev":"call_dropped","call":{},"why":{}}}"#,
                s(call),
                s(why)
            ),
        }
    }
}

impl Event {
    /// Reads a line [`Event::to_json`] wrote: the time and the event.
    pub fn from_json(line: &str) -> Option<(u64, Event)> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
        let number = |key: &str| v.get(key).and_then(serde_json::Value::as_u64);
        let address = |key: &str| text(key).and_then(|a| a.parse::<SocketAddr>().ok());
        let event = match v.get("ev")?.as_str()? {
            "registered" => Event::Registered {
                phone: text("phone")?,
                server: address("server")?,
            },
            "register_failed" => Event::RegisterFailed {
                phone: text("phone")?,
                server: address("server")?,
                status: u16::try_from(number("status")?).ok()?,
            },
            "moved" => Event::Moved {
                phone: text("phone")?,
                from: address("from")?,
                to: address("to")?,
            },
            "call_attempt" => Event::CallAttempt {
                call: text("call")?,
            },
            "call_answered" => Event::CallAnswered {
                call: text("call")?,
            },
            "call_failed" => Event::CallFailed {
                call: text("call")?,
                status: u16::try_from(number("status")?).ok()?,
            },
            "reoffered" => Event::Reoffered {
                call: text("call")?,
                phone: text("phone")?,
            },
            "call_ended" => Event::CallEnded {
                call: text("call")?,
                longest_silence_ms: number("silence_ms")?,
            },
            "call_dropped" => Event::CallDropped {
                call: text("call")?,
                why: text("why")?,
            },
            _ => return None,
        };
        Some((number("t")?, event))
    }
}

/// What a fleet run saw, from its events.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub attempts: usize,
    pub answered: usize,
    /// (time, Call-ID, status) of each failed set-up.
    pub failed: Vec<(u64, String, u16)>,
    /// (time, Call-ID, why) of each established call the network ended.
    pub dropped: Vec<(u64, String, String)>,
    pub ended: usize,
    /// New offers answered (a phone's media moved).
    pub reoffered: usize,
    /// Each phone's last successful registration: its server.
    pub registered_at: HashMap<String, SocketAddr>,
    /// Phones that moved to another server.
    pub moves: usize,
    /// (attempt time, answered) of each call set-up that finished.
    pub outcomes: Vec<(u64, bool)>,
    /// The longest silence any caller heard in a call that ended normally.
    pub longest_silence_ms: u64,
    /// (time, phone) of every move and every successful registration.
    pub move_times: Vec<(u64, String)>,
    pub registration_times: Vec<(u64, String)>,
}

impl Summary {
    pub fn of(events: &[(u64, Event)]) -> Summary {
        let mut summary = Summary::default();
        let mut attempt_at: HashMap<&str, u64> = HashMap::new();
        for (t, event) in events {
            match event {
                Event::Registered { phone, server } => {
                    summary.registered_at.insert(phone.clone(), *server);
                    summary.registration_times.push((*t, phone.clone()));
                }
                Event::Moved { phone, .. } => {
                    summary.moves += 1;
                    summary.move_times.push((*t, phone.clone()));
                }
                Event::CallAttempt { call } => {
                    summary.attempts += 1;
                    attempt_at.insert(call, *t);
                }
                Event::CallAnswered { call } => {
                    summary.answered += 1;
                    summary
                        .outcomes
                        .push((attempt_at.get(call.as_str()).copied().unwrap_or(*t), true));
                }
                Event::CallFailed { call, status } => {
                    summary.failed.push((*t, call.clone(), *status));
                    summary
                        .outcomes
                        .push((attempt_at.get(call.as_str()).copied().unwrap_or(*t), false));
                }
                Event::CallDropped { call, why } => {
                    summary.dropped.push((*t, call.clone(), why.clone()));
                }
                Event::CallEnded {
                    longest_silence_ms, ..
                } => {
                    summary.ended += 1;
                    summary.longest_silence_ms =
                        summary.longest_silence_ms.max(*longest_silence_ms);
                }
                Event::Reoffered { .. } => summary.reoffered += 1,
                Event::RegisterFailed { .. } => {}
            }
        }
        summary
    }

    /// From `fault_ms`, how long until every phone that moved after it was registered again
    /// (0 when none moved; None when one never registered again): until then that phone
    /// could not call.
    pub fn reregistered_ms(&self, fault_ms: u64) -> Option<u64> {
        let mut slowest = 0;
        for (moved_at, phone) in self.move_times.iter().filter(|(t, _)| *t >= fault_ms) {
            let again = self
                .registration_times
                .iter()
                .find(|(t, p)| t >= moved_at && p == phone)?;
            slowest = slowest.max(again.0 - fault_ms);
        }
        Some(slowest)
    }

    /// From `fault_ms`, how long until new calls succeed again for every phone: the later of
    /// [`Summary::reregistered_ms`] and the set-ups' recovery (0 when no set-up attempted
    /// after the fault failed, else until the first answered one after the last failed one).
    pub fn recovery_ms(&self, fault_ms: u64) -> Option<u64> {
        let setups = self.setups_recovery_ms(fault_ms)?;
        Some(setups.max(self.reregistered_ms(fault_ms)?))
    }

    fn setups_recovery_ms(&self, fault_ms: u64) -> Option<u64> {
        let mut outcomes = self.outcomes.clone();
        outcomes.sort_unstable();
        let Some(last_failure) = outcomes
            .iter()
            .filter(|(t, ok)| *t >= fault_ms && !ok)
            .map(|(t, _)| *t)
            .max()
        else {
            return Some(0);
        };
        outcomes
            .iter()
            .find(|(t, ok)| *ok && *t >= last_failure)
            .map(|(t, _)| t.saturating_sub(fault_ms))
    }
}

/// Runs the fleet until its duration is over and every call ended; events go to `events` with
/// their time since the start.
pub async fn run(config: FleetConfig, events: mpsc::UnboundedSender<(u64, Event)>) {
    let start = Instant::now();
    let config = Arc::new(config);
    let mut tasks = Vec::new();
    for (index, _) in config.phones.iter().enumerate() {
        let config = config.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut phone = FleetPhone::new(config, index, start, events).await;
            phone.run().await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Keep-alive periods a backup server serves a phone before the phone starts probing its
/// primary: a datacenter that comes back is given time to settle, and a flapping one does not
/// pull its phones back and forth.
const FAILBACK_AFTER_PINGS: u32 = 10;
/// Consecutive OPTIONS the primary answers before the phone moves back to it.
const FAILBACK_ANSWERS: u32 = 4;
/// No move back this close to the fleet's end: a caller stops at the end, and a phone that
/// moved without registering again would count as never recovered.
const FAILBACK_MARGIN: Duration = Duration::from_secs(3);
/// A caller gives up on an INVITE still ringing this long after it was last sent, well past the
/// network's ring timeout (30 s, which ends a call unanswered with 480): the set-up was lost
/// with the server that handled it (a datacenter lost while it rang). Without it the phone
/// would wait forever, out of every count and never idle again.
const RING_LIMIT: Duration = Duration::from_secs(40);

/// When a phone on a backup server goes back to its primary: once the backup has served it
/// [`FAILBACK_AFTER_PINGS`] keep-alive periods, the phone pings the primary alongside its
/// usual pings, and moves back after [`FAILBACK_ANSWERS`] answers in a row, only while it is
/// in no call (moving registers through the primary, and a call in progress keeps its
/// dialog's server: an established call is never dropped by a fail-back).
#[derive(Debug, Clone, Copy)]
struct Failback {
    /// When the phone moved to the server it is on.
    since: Instant,
    /// The primary's answers in a row.
    answers: u32,
}

impl Failback {
    fn new(now: Instant) -> Failback {
        Failback {
            since: now,
            answers: 0,
        }
    }

    /// The primary is worth probing (the phone is on a backup, and has been for a while).
    fn probing(&self, now: Instant, keepalive: Duration) -> bool {
        now >= self.since + keepalive * FAILBACK_AFTER_PINGS
    }

    fn answered(&mut self) {
        self.answers += 1;
    }

    fn missed(&mut self) {
        self.answers = 0;
    }

    /// Time to move back: the primary answered enough in a row, the phone is in no call, and
    /// the fleet is not about to end.
    fn due(&self, idle: bool, now: Instant, end: Instant) -> bool {
        self.answers >= FAILBACK_ANSWERS && idle && now + FAILBACK_MARGIN < end
    }
}

/// A request this phone sent and waits an answer for.
#[derive(Debug, Clone)]
struct Pending {
    text: String,
    server: SocketAddr,
    sent: Instant,
    tries: u32,
    /// INVITEs stop retransmitting after a provisional answer.
    provisional: bool,
    /// Servers this request was moved to after its first went silent.
    moved: u32,
}

/// The phone's call, as caller or callee.
#[derive(Debug)]
struct CallState {
    id: String,
    caller: bool,
    /// The dialog: our tag, theirs, the remote target, our next CSeq.
    local_tag: String,
    remote_tag: String,
    remote_target: String,
    /// The From/To header values as the phone writes them in its requests.
    from: String,
    to: String,
    cseq: u32,
    /// The Via of our last INVITE: the ACK of a non-2xx answer repeats it (RFC 3261 §17.1.1.3).
    invite_via: String,
    answered: bool,
    hang_up_at: Option<Instant>,
    bye_sent: bool,
    rtp: Arc<UdpSocket>,
    media_to: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    longest_silence: Arc<std::sync::Mutex<Duration>>,
    rtp_task: Option<tokio::task::JoinHandle<()>>,
}

impl CallState {
    /// A request in our INVITE's transaction (RFC 3261 §9.1, §17.1.1.3): its Request-URI, Via
    /// and CSeq number, with `method` and the To header `to`.
    fn in_invite_transaction(&self, method: &str, to: &str) -> String {
        format!(
            "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
             To: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            target = self.remote_target,
            via = self.invite_via,
            from = self.from,
            id = self.id,
            cseq = self.cseq,
        )
    }
}

impl Drop for CallState {
    fn drop(&mut self) {
        if let Some(task) = &self.rtp_task {
            task.abort();
        }
    }
}

struct FleetPhone {
    config: Arc<FleetConfig>,
    index: usize,
    user: String,
    password: String,
    socket: UdpSocket,
    local: SocketAddr,
    server: usize,
    start: Instant,
    events: mpsc::UnboundedSender<(u64, Event)>,
    seq: u64,
    register_cseq: u32,
    options_cseq: u32,
    /// By Call-ID + CSeq method: what we wait an answer for.
    pending: HashMap<(String, String), Pending>,
    missed_pings: u32,
    /// Back to the primary once it answers again (used while on a backup).
    failback: Failback,
    registered_until: Option<Instant>,
    next_register: Instant,
    next_ping: Instant,
    next_call: Instant,
    call: Option<CallState>,
    calls_made: u32,
}

fn sdp_for(ip: IpAddr, port: u16, version: u32) -> String {
    format!(
        "v=0\r\no=fleet 1 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
}

/// The RTP address an SDP body names.
fn media_address(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

fn tag_of(value: Option<&str>) -> String {
    value
        .and_then(|v| v.split(";tag=").nth(1))
        .map(|t| t.split(';').next().unwrap_or(t).to_owned())
        .unwrap_or_default()
}

impl FleetPhone {
    async fn new(
        config: Arc<FleetConfig>,
        index: usize,
        start: Instant,
        events: mpsc::UnboundedSender<(u64, Event)>,
    ) -> FleetPhone {
        let socket = UdpSocket::bind((config.bind_ip, 0))
            .await
            .expect("SIP socket");
        let local = socket.local_addr().expect("local address");
        let (user, password, _) = config.phones[index].clone();
        let now = Instant::now();
        // Spread the first registrations and calls over a second.
        let offset = Duration::from_millis((index as u64 * 37) % 1_000);
        FleetPhone {
            user,
            password,
            socket,
            local,
            server: 0,
            start,
            events,
            seq: 0,
            register_cseq: 0,
            options_cseq: 0,
            pending: HashMap::new(),
            missed_pings: 0,
            failback: Failback::new(now),
            registered_until: None,
            next_register: now + offset,
            next_ping: now + offset + config.keepalive,
            next_call: now + offset + Duration::from_secs(2),
            call: None,
            calls_made: 0,
            index,
            config,
        }
    }

    fn emit(&self, event: Event) {
        let t = self.start.elapsed().as_millis() as u64;
        let _ = self.events.send((t, event));
    }

    fn server(&self) -> SocketAddr {
        self.config.servers[self.server]
    }

    fn branch(&mut self) -> String {
        self.seq += 1;
        format!("z9hG4bK-f{}-{}", self.user, self.seq)
    }

    fn is_caller(&self) -> bool {
        self.index.is_multiple_of(2) && self.index + 1 < self.config.phones.len()
    }

    async fn send_to(&self, text: &str, to: SocketAddr) {
        let _ = self.socket.send_to(text.as_bytes(), to).await;
    }

    async fn send_request(&mut self, call_id: &str, method: &str, text: String) {
        let server = self.server();
        self.send_to(&text, server).await;
        self.pending.insert(
            (call_id.to_owned(), method.to_owned()),
            Pending {
                text,
                server,
                sent: Instant::now(),
                tries: 1,
                provisional: false,
                moved: 0,
            },
        );
    }

    fn register_text(&mut self, auth: &str) -> (String, String) {
        self.register_cseq += 1;
        let branch = self.branch();
        let call_id = format!("reg-{}-{}", self.user, self.local);
        let text = format!(
            "REGISTER sip:{r} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@{r}>;tag=r{u}\r\nTo: <sip:{u}@{r}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {c} REGISTER\r\nContact: <sip:{u}@{l}>\r\n{auth}\
             Expires: {e}\r\nContent-Length: 0\r\n\r\n",
            l = self.local,
            u = self.user,
            r = self.config.realm,
            c = self.register_cseq,
            e = self.config.register_expires,
        );
        (call_id, text)
    }

    fn credentials(
        &self,
        challenge: &Response,
        uri: &str,
        method: &Method,
        proxy: bool,
    ) -> Option<String> {
        let challenges = if proxy {
            challenge.headers.proxy_authenticate().ok()?
        } else {
            challenge.headers.www_authenticate().ok()?
        };
        let cnonce = format!("{:08x}", self.seq);
        answer(
            &challenges,
            &self.user,
            ClientSecret::Password(&self.password),
            method,
            uri,
            &cnonce,
            1,
        )
        .ok()
        .map(|a| a.to_string())
    }

    /// Moves to the next server and registers there at once.
    fn move_on(&mut self) {
        self.move_to((self.server + 1) % self.config.servers.len());
    }

    /// Moves to `config.servers[index]` and registers there at once.
    fn move_to(&mut self, index: usize) {
        let from = self.server();
        self.server = index;
        self.missed_pings = 0;
        self.failback = Failback::new(Instant::now());
        self.registered_until = None;
        self.next_register = Instant::now();
        self.pending
            .retain(|(_, m), _| m != "REGISTER" && m != "OPTIONS");
        let to = self.server();
        // A hang-up in progress goes on through the new server.
        for pending in self.pending.values_mut() {
            pending.server = to;
            pending.tries = 1;
            pending.moved += 1;
        }
        self.emit(Event::Moved {
            phone: self.user.clone(),
            from,
            to,
        });
    }

    async fn run(&mut self) {
        let end = self.start + self.config.duration;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if now >= end && self.call.is_none() && self.is_caller() {
                return;
            }
            if now >= end + self.config.hold + Duration::from_secs(3) {
                return; // callees linger for the last hang-ups, then stop
            }
            self.on_timers(now, end).await;
            let wake = self.next_wake().min(now + Duration::from_millis(100));
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = received else { continue };
                    match sip_msg::parse_datagram(&buf[..n]) {
                        Ok(SipMessage::Request(request)) => self.on_request(request, from).await,
                        Ok(SipMessage::Response(response)) => self.on_response(response).await,
                        Err(_) => {}
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_register.min(self.next_ping);
        if self.is_caller() {
            wake = wake.min(self.next_call);
        }
        if let Some(at) = self.call.as_ref().and_then(|c| c.hang_up_at) {
            wake = wake.min(at);
        }
        for p in self.pending.values() {
            wake = wake.min(p.sent + Duration::from_millis(500));
        }
        wake
    }

    async fn on_timers(&mut self, now: Instant, end: Instant) {
        if self.ringing_since_long(now) {
            self.cancel().await;
            self.call_over(Err((408, "no final answer to a ringing INVITE".into())));
        }
        // Retransmissions (every 500 ms; 8 tries ≈ Timer F/B's 32 s shortened to 4 s).
        let due: Vec<(String, String)> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.provisional && now >= p.sent + Duration::from_millis(500))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(p) = self.pending.get_mut(&key) else {
                continue;
            };
            // A call's request unanswered for 2 s: like a phone with a backup proxy, try the
            // next server (once per request), registering there.
            let in_call = key.1 == "INVITE" || key.1 == "BYE";
            if in_call && p.tries >= 4 && p.moved == 0 && self.config.servers.len() > 1 {
                self.move_on();
                let Some(p) = self.pending.get(&key) else {
                    continue;
                };
                let (text, server) = (p.text.clone(), p.server);
                self.send_to(&text, server).await;
                continue;
            }
            if p.tries >= 8 {
                self.pending.remove(&key);
                self.timed_out(&key.1).await;
                continue;
            }
            p.tries += 1;
            p.sent = now;
            let (text, server) = (p.text.clone(), p.server);
            self.send_to(&text, server).await;
        }
        if now >= self.next_register {
            self.next_register = now + Duration::from_secs(3600);
            let (call_id, text) = self.register_text("");
            self.send_request(&call_id, "REGISTER", text).await;
        }
        if now >= self.next_ping {
            self.next_ping = now + self.config.keepalive;
            let ping = (self.ping_call_id("ping"), "OPTIONS".to_owned());
            if self.pending.remove(&ping).is_some() {
                self.missed_pings += 1;
                if self.missed_pings >= self.config.misses {
                    self.move_on();
                    return;
                }
            }
            let server = self.server();
            self.send_ping(&ping.0, server, now).await;
            if self.probe_primary(now, end).await {
                return;
            }
        }
        if self.is_caller()
            && self.call.is_none()
            && now >= self.next_call
            && now < end
            && self.registered_until.is_some_and(|until| until > now)
        {
            self.start_call().await;
        }
        let hang_up = self.call.as_ref().is_some_and(|c| {
            c.answered && !c.bye_sent && c.hang_up_at.is_some_and(|at| now >= at || now >= end)
        });
        if hang_up {
            self.send_in_dialog("BYE", "").await;
            if let Some(call) = self.call.as_mut() {
                call.bye_sent = true;
            }
        }
    }

    /// The Call-ID of this phone's pings (`ping`) or of its fail-back probes (`failback`).
    fn ping_call_id(&self, kind: &str) -> String {
        format!("{kind}-{}-{}", self.user, self.local)
    }

    /// One OPTIONS to `server`, not retransmitted: a missed ping is what counts.
    async fn send_ping(&mut self, call_id: &str, server: SocketAddr, now: Instant) {
        self.options_cseq += 1;
        let branch = self.branch();
        let text = format!(
            "OPTIONS sip:{r} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@{r}>;tag=o{u}\r\nTo: <sip:{r}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {c} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            l = self.local,
            u = self.user,
            r = self.config.realm,
            c = self.options_cseq,
        );
        self.send_to(&text, server).await;
        self.pending.insert(
            (call_id.to_owned(), "OPTIONS".into()),
            Pending {
                text,
                server,
                sent: now,
                tries: 8,
                provisional: true,
                moved: 0,
            },
        );
    }

    /// On a backup: counts the primary's last answer, moves back when [`Failback::due`], or
    /// probes the primary again. True when the phone moved.
    async fn probe_primary(&mut self, now: Instant, end: Instant) -> bool {
        if self.server == 0 || !self.failback.probing(now, self.config.keepalive) {
            return false;
        }
        let probe = (self.ping_call_id("failback"), "OPTIONS".to_owned());
        if self.pending.remove(&probe).is_some() {
            self.failback.missed();
        }
        if self.failback.due(self.call.is_none(), now, end) {
            self.move_to(0);
            return true;
        }
        let primary = self.config.servers[0];
        self.send_ping(&probe.0, primary, now).await;
        false
    }

    /// Our INVITE got a provisional answer and nothing since for [`RING_LIMIT`].
    fn ringing_since_long(&self, now: Instant) -> bool {
        let Some(call) = self.call.as_ref().filter(|c| c.caller && !c.answered) else {
            return false;
        };
        self.pending
            .get(&(call.id.clone(), "INVITE".to_owned()))
            .is_some_and(|p| p.provisional && now >= p.sent + RING_LIMIT)
    }

    /// CANCEL of our ringing INVITE (same Request-URI, Via and CSeq number), not awaited: the
    /// phone gives up either way.
    async fn cancel(&mut self) {
        let Some(call) = self.call.as_ref() else {
            return;
        };
        let text = call.in_invite_transaction("CANCEL", &call.to);
        let server = self.server();
        self.send_to(&text, server).await;
    }

    /// A request got no final answer in time.
    async fn timed_out(&mut self, method: &str) {
        match method {
            "REGISTER" => {
                self.emit(Event::RegisterFailed {
                    phone: self.user.clone(),
                    server: self.server(),
                    status: 408,
                });
                self.move_on();
            }
            "INVITE" => self.call_over(Err((408, "no answer to the INVITE".into()))),
            "BYE" => self.call_over(Err((408, "no answer to the BYE".into()))),
            _ => {}
        }
    }

    async fn start_call(&mut self) {
        let peer = &self.config.phones[self.index + 1];
        self.calls_made += 1;
        let call_id = format!("fleet-{}-{}@{}", self.user, self.calls_made, self.local);
        let rtp = Arc::new(
            UdpSocket::bind((self.config.bind_ip, 0))
                .await
                .expect("RTP socket"),
        );
        let to = format!("<sip:{}@{}>", peer.2, self.config.realm);
        let from = format!(
            "<sip:{}@{}>;tag=c{}",
            self.user, self.config.realm, self.calls_made
        );
        self.call = Some(CallState {
            id: call_id.clone(),
            caller: true,
            local_tag: format!("c{}", self.calls_made),
            remote_tag: String::new(),
            remote_target: format!("sip:{}@{}", peer.2, self.config.realm),
            from,
            to,
            cseq: 1,
            invite_via: String::new(),
            answered: false,
            hang_up_at: None,
            bye_sent: false,
            rtp,
            media_to: Arc::default(),
            longest_silence: Arc::default(),
            rtp_task: None,
        });
        self.emit(Event::CallAttempt {
            call: call_id.clone(),
        });
        let text = self.invite_text("");
        self.send_request(&call_id, "INVITE", text).await;
    }

    fn invite_text(&mut self, auth: &str) -> String {
        let branch = self.branch();
        let (local, ip) = (self.local, self.config.bind_ip);
        let Some(call) = self.call.as_mut() else {
            return String::new();
        };
        call.invite_via = format!("SIP/2.0/UDP {local};branch={branch};rport");
        let port = call.rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        let sdp = sdp_for(ip, port, 1);
        format!(
            "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:{u}@{local}>\r\n{auth}Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            target = call.remote_target,
            from = call.from,
            to = call.to,
            id = call.id,
            cseq = call.cseq,
            u = self.user,
            len = sdp.len(),
        )
    }

    async fn send_in_dialog(&mut self, method: &str, extra: &str) {
        let branch = self.branch();
        let local = self.local;
        let Some(call) = self.call.as_mut() else {
            return;
        };
        call.cseq += 1;
        let (from, to) = if call.caller {
            (
                call.from.clone(),
                format!("{};tag={}", call.to, call.remote_tag),
            )
        } else {
            (
                format!("{};tag={}", call.to, call.local_tag),
                call.from.clone(),
            )
        };
        let text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            target = call.remote_target,
            id = call.id,
            cseq = call.cseq,
        );
        let id = call.id.clone();
        if method == "ACK" {
            let server = self.server();
            self.send_to(&text, server).await;
        } else {
            self.send_request(&id, method, text).await;
        }
    }

    /// Starts sending RTP to the call's media address, and measures the silences received.
    fn start_rtp(&mut self) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if call.rtp_task.is_some() {
            return;
        }
        let (socket, to, silence) = (
            call.rtp.clone(),
            call.media_to.clone(),
            call.longest_silence.clone(),
        );
        call.rtp_task = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq: u16 = 0;
            let mut last_heard = Instant::now();
            let mut buf = [0u8; 2048];
            loop {
                tick.tick().await;
                let destination = *to.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(destination) = destination {
                    let mut packet = vec![0x80, 0x00];
                    packet.extend_from_slice(&seq.to_be_bytes());
                    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                    packet.extend_from_slice(&0x5EED_u32.to_be_bytes());
                    packet.extend(std::iter::repeat_n(0xD5u8, 160));
                    let _ = socket.send_to(&packet, destination).await;
                    seq = seq.wrapping_add(1);
                }
                while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
                    if n >= 12 {
                        let now = Instant::now();
                        let mut longest = silence
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        *longest = (*longest).max(now - last_heard);
                        last_heard = now;
                    }
                }
            }
        }));
    }

    fn call_over(&mut self, outcome: Result<(), (u16, String)>) {
        let Some(call) = self.call.take() else {
            return;
        };
        self.pending.retain(|(id, _), _| *id != call.id);
        self.next_call = Instant::now() + self.config.pause;
        let silence = *call
            .longest_silence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let event = match outcome {
            Ok(()) => Event::CallEnded {
                call: call.id.clone(),
                longest_silence_ms: silence.as_millis() as u64,
            },
            Err((status, _)) if !call.answered => Event::CallFailed {
                call: call.id.clone(),
                status,
            },
            Err((_, why)) => Event::CallDropped {
                call: call.id.clone(),
                why,
            },
        };
        if call.caller || matches!(event, Event::CallDropped { .. }) {
            self.emit(event);
        }
    }

    async fn reply(
        &self,
        request: &Request,
        status: StatusCode,
        tag: Option<&str>,
        sdp: Option<String>,
        to: SocketAddr,
    ) {
        let mut response = build_response(request, status, tag);
        if let Some(sdp) = sdp {
            crate::answer_with_sdp(&mut response, &self.user, self.local, &sdp);
        }
        let _ = self.socket.send_to(&response.to_bytes(), to).await;
    }

    async fn on_request(&mut self, request: Request, from: SocketAddr) {
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        let ours = self.call.as_ref().is_some_and(|c| c.id == call_id);
        match request.method {
            Method::Options => self.reply(&request, StatusCode::OK, None, None, from).await,
            Method::Invite if ours => {
                // A new offer in the call: the media moves (ADR 0020).
                if let Some(address) = media_address(&request.body)
                    && let Some(call) = self.call.as_mut()
                {
                    *call
                        .media_to
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(address);
                    if let Some(contact) =
                        request
                            .headers
                            .contacts()
                            .ok()
                            .flatten()
                            .and_then(|c| match c {
                                sip_msg::Contacts::List(list) => {
                                    list.first().map(|c| c.uri.to_string())
                                }
                                _ => None,
                            })
                    {
                        call.remote_target = contact;
                    }
                }
                let port = self
                    .call
                    .as_ref()
                    .and_then(|c| c.rtp.local_addr().ok())
                    .map(|a| a.port())
                    .unwrap_or(0);
                let tag = self.call.as_ref().map(|c| c.local_tag.clone());
                let sdp = sdp_for(self.config.bind_ip, port, 2 + self.seq as u32);
                self.reply(&request, StatusCode::OK, tag.as_deref(), Some(sdp), from)
                    .await;
                self.emit(Event::Reoffered {
                    call: call_id,
                    phone: self.user.clone(),
                });
            }
            Method::Invite if self.call.is_none() => {
                // A new call: ring, then answer at once with our SDP.
                let rtp = Arc::new(
                    UdpSocket::bind((self.config.bind_ip, 0))
                        .await
                        .expect("RTP socket"),
                );
                let port = rtp.local_addr().expect("RTP address").port();
                let tag = format!("a{}", self.seq);
                let header =
                    |name: HeaderName| request.headers.get(&name).unwrap_or_default().to_owned();
                let remote_target = request
                    .headers
                    .contacts()
                    .ok()
                    .flatten()
                    .and_then(|c| match c {
                        sip_msg::Contacts::List(list) => list.first().map(|c| c.uri.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let media_to = Arc::new(std::sync::Mutex::new(media_address(&request.body)));
                self.call = Some(CallState {
                    id: call_id.clone(),
                    caller: false,
                    local_tag: tag.clone(),
                    remote_tag: tag_of(Some(&header(HeaderName::From))),
                    remote_target,
                    from: header(HeaderName::From),
                    to: header(HeaderName::To),
                    cseq: 0,
                    invite_via: String::new(),
                    answered: true,
                    hang_up_at: None,
                    bye_sent: false,
                    rtp,
                    media_to,
                    longest_silence: Arc::default(),
                    rtp_task: None,
                });
                self.reply(&request, StatusCode::RINGING, Some(&tag), None, from)
                    .await;
                let sdp = sdp_for(self.config.bind_ip, port, 1);
                self.reply(&request, StatusCode::OK, Some(&tag), Some(sdp), from)
                    .await;
                self.start_rtp();
            }
            Method::Invite => {
                self.reply(&request, StatusCode::BUSY_HERE, Some("busy"), None, from)
                    .await;
            }
            Method::Ack => {}
            Method::Bye if ours => {
                let tag = self.call.as_ref().map(|c| c.local_tag.clone());
                self.reply(&request, StatusCode::OK, tag.as_deref(), None, from)
                    .await;
                let caller = self.call.as_ref().is_some_and(|c| c.caller);
                if caller {
                    // The caller did not hang up: the network ended its call.
                    let reason = request
                        .headers
                        .get(&HeaderName::Reason)
                        .unwrap_or("BYE")
                        .to_owned();
                    self.call_over(Err((200, format!("BYE from the network: {reason}"))));
                } else {
                    self.call_over(Ok(()));
                }
            }
            _ => {
                self.reply(
                    &request,
                    StatusCode::CALL_DOES_NOT_EXIST,
                    Some("x"),
                    None,
                    from,
                )
                .await;
            }
        }
    }

    async fn on_response(&mut self, response: Response) {
        let call_id = response.headers.call_id().unwrap_or_default().to_owned();
        let Ok(Some(cseq)) = response.headers.cseq() else {
            return;
        };
        let method = cseq.method.to_string();
        let key = (call_id.clone(), method.clone());
        let status = response.status.as_u16();
        if status < 200 {
            if let Some(p) = self.pending.get_mut(&key) {
                p.provisional = true;
            }
            return;
        }
        if self.pending.remove(&key).is_none() && method != "INVITE" {
            return; // a retransmitted answer
        }
        match method.as_str() {
            "OPTIONS" if call_id.starts_with("failback-") => self.failback.answered(),
            "OPTIONS" => self.missed_pings = 0,
            "REGISTER" => match status {
                200 => {
                    let now = Instant::now();
                    let expires = Duration::from_secs(u64::from(self.config.register_expires));
                    self.registered_until = Some(now + expires);
                    self.next_register = now + expires / 2;
                    self.emit(Event::Registered {
                        phone: self.user.clone(),
                        server: self.server(),
                    });
                }
                401 => {
                    let uri = format!("sip:{}", self.config.realm);
                    if let Some(auth) = self.credentials(&response, &uri, &Method::Register, false)
                    {
                        let (call_id, text) =
                            self.register_text(&format!("Authorization: {auth}\r\n"));
                        self.send_request(&call_id, "REGISTER", text).await;
                    }
                }
                _ => {
                    self.emit(Event::RegisterFailed {
                        phone: self.user.clone(),
                        server: self.server(),
                        status,
                    });
                    self.move_on();
                }
            },
            "INVITE" => self.on_invite_answer(response).await,
            "BYE" => {
                if status == 200 {
                    self.call_over(Ok(()));
                } else {
                    self.call_over(Err((status, format!("BYE answered {status}"))));
                }
            }
            _ => {}
        }
    }

    async fn on_invite_answer(&mut self, response: Response) {
        let status = response.status.as_u16();
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let seq = response.headers.cseq().ok().flatten().map(|c| c.seq);
        if response.headers.call_id() != Some(call.id.as_str())
            || !call.caller
            || seq != Some(call.cseq)
        {
            return; // an answer to an earlier INVITE of the call (a retransmitted 407)
        }
        if status >= 300 {
            // ACK the failure hop by hop, in the INVITE's transaction.
            let to = response.headers.get(&HeaderName::To).unwrap_or_default();
            let text = call.in_invite_transaction("ACK", to);
            let server = self.server();
            self.send_to(&text, server).await;
        }
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if call.answered {
            // A retransmitted 2xx: ACK again.
            if status < 300 {
                self.send_ack_for(&response).await;
            }
            return;
        }
        match status {
            200..=299 => {
                call.answered = true;
                call.remote_tag = tag_of(response.headers.get(&HeaderName::To));
                if let Some(Ok(Some(sip_msg::Contacts::List(list)))) =
                    Some(response.headers.contacts())
                    && let Some(contact) = list.first()
                {
                    call.remote_target = contact.uri.to_string();
                }
                *call
                    .media_to
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    media_address(&response.body);
                call.hang_up_at = Some(Instant::now() + self.config.hold);
                let id = call.id.clone();
                self.send_ack_for(&response).await;
                self.start_rtp();
                self.emit(Event::CallAnswered { call: id });
            }
            407 | 401 => {
                call.cseq += 1;
                let uri = call.remote_target.clone();
                let id = call.id.clone();
                // ACK the challenge is the edge's transaction's job (non-2xx ACK, hop by hop).
                if let Some(auth) =
                    self.credentials(&response, &uri, &Method::Invite, status == 407)
                {
                    let header = if status == 407 {
                        "Proxy-Authorization"
                    } else {
                        "Authorization"
                    };
                    let text = self.invite_text(&format!("{header}: {auth}\r\n"));
                    self.send_request(&id, "INVITE", text).await;
                } else {
                    self.call_over(Err((status, "no usable challenge".into())));
                }
            }
            _ => self.call_over(Err((status, format!("INVITE answered {status}")))),
        }
    }

    async fn send_ack_for(&mut self, response: &Response) {
        let branch = self.branch();
        let local = self.local;
        let Some(call) = self.call.as_ref() else {
            return;
        };
        let to = response.headers.get(&HeaderName::To).unwrap_or_default();
        let cseq = response
            .headers
            .cseq()
            .ok()
            .flatten()
            .map(|c| c.seq)
            .unwrap_or(call.cseq);
        let text = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} ACK\r\n\
             Content-Length: 0\r\n\r\n",
            target = call.remote_target,
            from = call.from,
            id = call.id,
        );
        let server = self.server();
        self.send_to(&text, server).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn events_read_back_what_they_wrote() {
        let server: SocketAddr = "10.77.0.2:5070".parse().unwrap();
        let events = [
            Event::Registered {
                phone: "p1100".into(),
                server,
            },
            Event::RegisterFailed {
                phone: "p1100".into(),
                server,
                status: 503,
            },
            Event::Moved {
                phone: "p1101".into(),
                from: server,
                to: server,
            },
            Event::CallAttempt {
                call: "c\"1".into(),
            },
            Event::CallAnswered { call: "c1".into() },
            Event::CallFailed {
                call: "c1".into(),
                status: 480,
            },
            Event::Reoffered {
                call: "c1".into(),
                phone: "p1100".into(),
            },
            Event::CallEnded {
                call: "c1".into(),
                longest_silence_ms: 40,
            },
            Event::CallDropped {
                call: "c1".into(),
                why: "BYE from the network: SIP;cause=408".into(),
            },
        ];
        for (t, event) in events.into_iter().enumerate() {
            let line = event.to_json(t as u64);
            assert_eq!(Event::from_json(&line), Some((t as u64, event)), "{line}");
        }
        assert_eq!(Event::from_json("not json"), None);
    }

    #[test]
    fn a_phone_fails_back_only_after_a_while_on_the_backup_enough_answers_and_between_calls() {
        let keepalive = Duration::from_millis(500);
        let moved = Instant::now();
        let end = moved + Duration::from_secs(60);
        let mut failback = Failback::new(moved);
        assert!(!failback.probing(moved + keepalive * 9, keepalive));
        let now = moved + keepalive * FAILBACK_AFTER_PINGS;
        assert!(failback.probing(now, keepalive));
        for _ in 1..FAILBACK_ANSWERS {
            failback.answered();
        }
        assert!(!failback.due(true, now, end), "one answer short");
        failback.missed();
        for _ in 0..FAILBACK_ANSWERS {
            failback.answered();
        }
        assert!(failback.due(true, now, end));
        assert!(!failback.due(false, now, end), "never in a call");
        assert!(
            !failback.due(true, end - FAILBACK_MARGIN, end),
            "not at the fleet's end"
        );
    }

    /// A fake SIP server on loopback: answers every request 200 while `answering`, drops it
    /// otherwise (a datacenter away).
    async fn fake_server(answering: Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if !answering.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                if let Ok(SipMessage::Request(request)) = sip_msg::parse_datagram(&buf[..n]) {
                    let response = build_response(&request, StatusCode::OK, Some("fake"));
                    let _ = socket.send_to(&response.to_bytes(), from).await;
                }
            }
        });
        address
    }

    #[tokio::test]
    async fn a_phone_moves_to_its_backup_and_back_to_its_primary_when_it_answers_again() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let primary_up = Arc::new(AtomicBool::new(false));
        let primary = fake_server(primary_up.clone()).await;
        let backup = fake_server(Arc::new(AtomicBool::new(true))).await;
        let config = FleetConfig {
            servers: vec![primary, backup],
            realm: "fleet.test".into(),
            bind_ip: "127.0.0.1".parse().unwrap(),
            // One phone: a callee nobody calls, always idle.
            phones: vec![("p1".into(), "pw1".into(), "1".into())],
            register_expires: 60,
            keepalive: Duration::from_millis(50),
            misses: 2,
            hold: Duration::from_millis(100),
            pause: Duration::from_millis(100),
            duration: Duration::from_secs(30),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fleet = tokio::spawn(run(config, tx));
        let mut seen = Vec::new();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some((_, event)) = rx.recv().await {
                seen.push(event.clone());
                match event {
                    // On the backup: the primary comes back.
                    Event::Registered { server, .. } if server == backup => {
                        primary_up.store(true, Ordering::SeqCst);
                    }
                    Event::Registered { server, .. } if server == primary => return,
                    _ => {}
                }
            }
        })
        .await;
        fleet.abort();
        assert!(
            outcome.is_ok(),
            "never registered at the primary again: {seen:?}"
        );
        let moves: Vec<(SocketAddr, SocketAddr)> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Moved { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(moves, [(primary, backup), (backup, primary)], "{seen:?}");
    }

    #[test]
    fn recovery_is_zero_without_failures_and_counts_to_the_first_success_after_the_last() {
        let mut summary = Summary {
            outcomes: vec![(100, true), (1_000, true)],
            ..Summary::default()
        };
        assert_eq!(summary.recovery_ms(500), Some(0));
        summary.outcomes = vec![(600, false), (900, false), (1_500, true), (2_000, true)];
        assert_eq!(summary.recovery_ms(500), Some(1_000));
        summary.outcomes = vec![(600, false)];
        assert_eq!(summary.recovery_ms(500), None);
        // A phone that moved is unavailable until it registered again.
        summary.outcomes = vec![(2_000, true)];
        summary.move_times = vec![(1_200, "p1".into()), (100, "p2".into())];
        summary.registration_times = vec![(50, "p1".into()), (1_900, "p1".into())];
        assert_eq!(summary.recovery_ms(500), Some(1_400));
        summary.move_times.push((1_300, "p3".into()));
        assert_eq!(summary.recovery_ms(500), None, "p3 never came back");
    }
}
