//! A real softphone: baresip (Debian's `baresip`, 1.0.0 on bookworm) as a child process on
//! loopback, driven over its `ctrl_tcp` control interface (netstring-framed JSON commands
//! and events on a free TCP port), with no audio hardware.
//!
//! Each instance gets its own configuration directory (`baresip -f <dir>`):
//!
//! - `sip_listen 127.0.0.1:<p>` and `net_interface 127.0.0.1` (SDP and Contact say
//!   127.0.0.1). baresip also listens on TCP `<p>+1` for TLS, so `p` is picked with `p+1`
//!   free too; never 5060.
//! - microphone: the `aufile` module plays a generated WAV (a sine, 8 kHz mono 16-bit,
//!   [`write_tone_wav`]); loudspeaker: the `aubridge` module's player (no hardware, never
//!   read). baresip 1.0.0's `aufile` is a source only.
//! - the `sndfile` audio filter records what is sent and what is received, decoded, to
//!   `<dir>/recordings/dump-<time>-enc.wav` and `…-dec.wav` ([`Baresip::received_audio`]).
//! - `rtp_stats yes`: when a call ends baresip prints the call's RTP packet counts
//!   (transmitted and received), read by [`Baresip::wait_call_summary`].
//! - modules `g711` (PCMU/PCMA), `aufile`, `aubridge`, `sndfile`, `account`, `menu` (the
//!   commands: `dial`, `hangup`, `accept`, `uafind`, `reginfo`, `callstat`…) and `ctrl_tcp`.
//!   Not `stdio` (it needs a terminal), not `cons`/`httpd` (fixed ports).
//!
//! The `accounts` file has one line per [`Account`]: registered ones go through their
//! outbound proxy (`outbound="sip:<registrar>;transport=udp"`) for every request, calls
//! included; a "direct" account (no outbound, no registration) dials a URI itself. The
//! first account is the current one; [`Baresip::dial_from`] selects another (`uafind`).
//!
//! Events (`REGISTER_OK`, `CALL_ESTABLISHED`, `CALL_CLOSED`, …) are collected by a reader
//! thread; each `wait_*` returns the oldest matching event not yet returned by a wait, so a
//! test can run several calls in sequence.
//!
//! A call through a PBX whose SIP edge listens on `edge` (users `user1`/`user2` known to it):
//!
//! ```no_run
//! # use std::net::SocketAddr;
//! # use std::time::Duration;
//! use testkit::baresip::{Account, Baresip, BaresipOptions};
//! use testkit::sipp::SipUser;
//! # fn call(edge: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
//! let wait = Duration::from_secs(10);
//! let (u1, u2) = (SipUser::numbered(1, "calanque.test"), SipUser::numbered(2, "calanque.test"));
//! let mut a = Baresip::start(BaresipOptions::new(Account::registered(&u1, edge)))?;
//! let mut b = Baresip::start(BaresipOptions::new(Account::registered(&u2, edge)))?;
//! a.wait_registered(wait)?;
//! b.wait_registered(wait)?;
//! a.dial("sip:user2@calanque.test")?;
//! a.wait_call_established(wait)?;
//! b.wait_call_established(wait)?; // answermode=auto
//! std::thread::sleep(Duration::from_secs(3));
//! a.hangup()?;
//! a.wait_call_closed(wait)?;
//! b.wait_call_closed(wait)?;
//! let (sa, sb) = (a.wait_call_summary(wait)?, b.wait_call_summary(wait)?);
//! assert!(sa.rx_packets >= 100 && sb.rx_packets >= 100); // 50 packets/s each way
//! let heard = b.received_audio()?; // the decoded audio B received: A's 1 kHz tone
//! assert!((heard.frequency_hz - 1000.0).abs() < 50.0);
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::io::{BufWriter, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::{HarnessError, ManagedProcess, free_port};
use crate::sipp::SipUser;

const PROGRAM: &str = "baresip";
/// Debian's module directory.
pub const MODULE_PATH: &str = "/usr/lib/baresip/modules";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
const TAIL_LINES: usize = 40;

/// What went wrong while driving a running baresip.
#[derive(thiserror::Error)]
pub enum BaresipError {
    /// The control connection failed.
    #[error("baresip control connection: {source}\nlog tail:\n{log_tail}")]
    Control {
        #[source]
        source: std::io::Error,
        log_tail: String,
    },
    /// A command was refused (`"ok":false`).
    #[error("baresip refused `{command}`: {data}\nlog tail:\n{log_tail}")]
    Command {
        command: String,
        data: String,
        log_tail: String,
    },
    /// What was awaited did not happen in time.
    #[error("baresip: no {what} within {timeout:?}; events: {events}\nlog tail:\n{log_tail}")]
    Timeout {
        what: String,
        timeout: Duration,
        events: String,
        log_tail: String,
    },
    /// A registration failed (`REGISTER_FAIL`).
    #[error("baresip: registration of {account} failed: {reason}\nlog tail:\n{log_tail}")]
    RegisterFailed {
        account: String,
        reason: String,
        log_tail: String,
    },
    /// The call closed before it was established.
    #[error("baresip: call closed before being established: {reason}\nlog tail:\n{log_tail}")]
    CallFailed { reason: String, log_tail: String },
    /// A recording could not be read or is not a PCM WAV.
    #[error("baresip recording {path}: {reason}")]
    Recording { path: PathBuf, reason: String },
}

// `expect` prints an error with `Debug`: print the log tail with its line breaks.
impl fmt::Debug for BaresipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One SIP account (a user agent) of a baresip instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User part of the address of record.
    pub user: String,
    /// Domain of the address of record (the realm of a registrar, or `127.0.0.1`).
    pub domain: String,
    /// Digest password; `None` for an account that never authenticates.
    pub password: Option<String>,
    /// Outbound proxy every request of this account goes to (UDP); `None`: requests go to
    /// the request-URI itself.
    pub outbound: Option<SocketAddr>,
    /// Registration interval in seconds; 0: never registers.
    pub regint: u32,
    /// Answer incoming calls at once (`answermode=auto`).
    pub auto_answer: bool,
}

impl Account {
    /// `user` registering at `registrar` (its outbound proxy) in `user.domain`, every 600 s,
    /// answering calls automatically.
    pub fn registered(user: &SipUser, registrar: SocketAddr) -> Account {
        Account {
            user: user.username.clone(),
            domain: user.domain.clone(),
            password: Some(user.password.clone()),
            outbound: Some(registrar),
            regint: 600,
            auto_answer: true,
        }
    }

    /// `sip:<user>@127.0.0.1`, not registering and without outbound proxy: dials URIs
    /// directly (for example another baresip's [`Baresip::contact_uri`]); auto-answers.
    pub fn direct(user: &str) -> Account {
        Account {
            user: user.to_owned(),
            domain: Ipv4Addr::LOCALHOST.to_string(),
            password: None,
            outbound: None,
            regint: 0,
            auto_answer: true,
        }
    }

    /// `sip:<user>@<domain>` (how baresip names the account in events and `uafind`).
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    /// The line of the `accounts` file.
    pub fn line(&self) -> String {
        let mut line = format!("<{}>", self.aor());
        if let Some(password) = &self.password {
            line.push_str(&format!(";auth_user={};auth_pass={password}", self.user));
        }
        if let Some(outbound) = self.outbound {
            line.push_str(&format!(";outbound=\"sip:{outbound};transport=udp\""));
        }
        line.push_str(&format!(";regint={}", self.regint));
        line.push_str(if self.auto_answer {
            ";answermode=auto"
        } else {
            ";answermode=manual"
        });
        line
    }
}

/// How to start baresip.
#[derive(Debug, Clone)]
pub struct BaresipOptions {
    /// The accounts, the first one current (used by [`Baresip::dial`]).
    pub accounts: Vec<Account>,
    /// Frequency of the sine played as the microphone.
    pub tone_hz: u32,
    /// Length of the played WAV. At its end baresip 1.0.0's `aufile` reports an audio
    /// error and baresip hangs the call up (`CALL_CLOSED` with reason `end of file`): it
    /// must outlast the call (or be set short on purpose, to hang up after that long).
    pub tone_seconds: u32,
    /// How long baresip gets to open its control port.
    pub ready_timeout: Duration,
    /// `-v` (debug output in the log).
    pub verbose: bool,
    /// `-s` (SIP trace in the log).
    pub sip_trace: bool,
}

impl BaresipOptions {
    /// One account; a 1 kHz tone of 120 s; SIP trace on.
    pub fn new(account: Account) -> BaresipOptions {
        BaresipOptions {
            accounts: vec![account],
            tone_hz: 1000,
            tone_seconds: 120,
            ready_timeout: Duration::from_secs(10),
            verbose: false,
            sip_trace: true,
        }
    }

    /// Adds an account (after the current one).
    pub fn with_account(mut self, account: Account) -> BaresipOptions {
        self.accounts.push(account);
        self
    }
}

/// One event from `ctrl_tcp` (`{"event":true,"type":…}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `REGISTER_OK`, `CALL_ESTABLISHED`, `CALL_CLOSED`, `CALL_RTCP`, …
    pub kind: String,
    /// The account (address of record) it concerns.
    pub account: String,
    /// The peer's URI, for call events.
    pub peer: String,
    /// The call id, for call events.
    pub call_id: String,
    /// The event's parameter (for `CALL_CLOSED`: the reason).
    pub param: String,
    /// The JSON text.
    pub raw: String,
}

/// The RTP counts baresip prints when a call ends (`rtp_stats yes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallSummary {
    /// RTP packets sent.
    pub tx_packets: u64,
    /// RTP packets received.
    pub rx_packets: u64,
    /// Packets the peer reported lost (from RTCP).
    pub tx_lost: u64,
    /// Packets lost on reception.
    pub rx_lost: u64,
    /// Reception errors.
    pub rx_errors: u64,
}

/// What a recording (16-bit PCM WAV) contains.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioAnalysis {
    /// The file.
    pub path: PathBuf,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Samples (per channel).
    pub samples: usize,
    /// Largest absolute sample value.
    pub peak: u16,
    /// Root mean square of the samples.
    pub rms: f64,
    /// Samples whose absolute value is at least 1/16 of full scale.
    pub loud_samples: usize,
    /// The frequency estimated from zero crossings of the non-silent part, in Hz.
    pub frequency_hz: f64,
}

impl AudioAnalysis {
    /// Duration of the recording.
    pub fn seconds(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.samples as f64 / f64::from(self.sample_rate)
        }
    }
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    taken: HashSet<usize>,
    responses: Vec<(String, bool, String)>,
    closed: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running baresip; killed when dropped.
#[derive(Debug)]
pub struct Baresip {
    process: ManagedProcess,
    config_dir: tempfile::TempDir,
    options: BaresipOptions,
    sip_port: u16,
    ctrl: TcpStream,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    next_token: u64,
    summaries_taken: usize,
}

impl Baresip {
    /// Writes the configuration, starts baresip and connects to its control port.
    pub fn start(options: BaresipOptions) -> Result<Baresip, HarnessError> {
        let spawn_err = |source| HarnessError::Spawn {
            program: PROGRAM.to_owned(),
            source,
        };
        if options.accounts.is_empty() {
            return Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "baresip needs at least one account",
            )));
        }
        let config_dir = tempfile::Builder::new()
            .prefix("calanque-baresip-cfg-")
            .tempdir()
            .map_err(spawn_err)?;
        let dir = config_dir.path();
        let tone = dir.join("tone.wav");
        write_tone_wav(&tone, options.tone_hz, options.tone_seconds, 8000).map_err(spawn_err)?;
        let recordings = dir.join("recordings");
        std::fs::create_dir_all(&recordings).map_err(spawn_err)?;
        let sip_port = free_sip_port();
        let ctrl_port = loop {
            let port = free_port();
            if port != sip_port && port != sip_port + 1 {
                break port;
            }
        };
        let config = config_text(sip_port, ctrl_port, &tone, &recordings);
        std::fs::write(dir.join("config"), config).map_err(spawn_err)?;
        let accounts: String = options.accounts.iter().map(|a| a.line() + "\n").collect();
        std::fs::write(dir.join("accounts"), accounts).map_err(spawn_err)?;
        std::fs::write(dir.join("contacts"), "").map_err(spawn_err)?;

        let mut args = vec!["-f".to_owned(), dir.to_string_lossy().into_owned()];
        if options.verbose {
            args.push("-v".to_owned());
        }
        if options.sip_trace {
            args.push("-s".to_owned());
        }
        let ctrl_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ctrl_port));
        let process = ManagedProcess::start(PROGRAM, &args, &[ctrl_addr], options.ready_timeout)?;
        let ctrl = TcpStream::connect_timeout(&ctrl_addr, Duration::from_secs(2)).map_err(|e| {
            HarnessError::NotReady {
                program: format!("{PROGRAM} control port ({e})"),
                timeout: options.ready_timeout,
                log_tail: process.log_tail(TAIL_LINES),
            }
        })?;
        let shared = Arc::new(Shared::default());
        let reader = {
            let stream = ctrl.try_clone().map_err(spawn_err)?;
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("baresip-ctrl".to_owned())
                .spawn(move || read_events(stream, &shared))
                .map_err(spawn_err)?
        };
        Ok(Baresip {
            process,
            config_dir,
            options,
            sip_port,
            ctrl,
            shared,
            reader: Some(reader),
            next_token: 0,
            summaries_taken: 0,
        })
    }

    /// The SIP address (UDP and TCP; TLS on the next port).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.sip_port))
    }

    /// `sip:<user>@127.0.0.1:<sip port>`: a URI that reaches this baresip directly, without a
    /// registrar (give the user of one of its accounts).
    pub fn contact_uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.sip_addr())
    }

    /// The options it was started with.
    pub fn options(&self) -> &BaresipOptions {
        &self.options
    }

    /// The configuration directory (config, accounts, tone.wav, recordings/).
    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    /// Where `sndfile` writes the sent (`*-enc.wav`) and received (`*-dec.wav`) audio.
    pub fn recordings_dir(&self) -> PathBuf {
        self.config_dir.path().join("recordings")
    }

    /// The full log (stdout and stderr).
    pub fn log(&self) -> String {
        let raw =
            std::fs::read(self.process.dir().join(format!("{PROGRAM}.log"))).unwrap_or_default();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// The last `lines` lines of the log (the per-second status lines left out).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log
            .split(['\n', '\r'])
            .filter(|l| !l.is_empty() && !l.contains("(bit/s)"))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.clone()
    }

    /// Sends a `menu` command (`"dial"`, `"hangup"`, `"reginfo"`, …) and returns its output;
    /// an error when refused or unanswered within 5 s.
    pub fn command(&mut self, command: &str, params: &str) -> Result<String, BaresipError> {
        self.next_token += 1;
        let token = self.next_token.to_string();
        let json = format!(
            "{{\"command\":\"{}\",\"params\":\"{}\",\"token\":\"{token}\"}}",
            json_escape(command),
            json_escape(params)
        );
        let frame = format!("{}:{json},", json.len());
        if let Err(source) = self.ctrl.write_all(frame.as_bytes()) {
            return Err(BaresipError::Control {
                source,
                log_tail: self.log_tail(TAIL_LINES),
            });
        }
        let deadline = now() + COMMAND_TIMEOUT;
        let mut state = self.shared.lock();
        loop {
            if let Some(i) = state.responses.iter().position(|r| r.0 == token) {
                let (_, ok, data) = state.responses.remove(i);
                drop(state);
                return if ok {
                    Ok(data)
                } else {
                    Err(BaresipError::Command {
                        command: format!("{command} {params}"),
                        data,
                        log_tail: self.log_tail(TAIL_LINES),
                    })
                };
            }
            let current = now();
            if state.closed.is_some() || current >= deadline {
                let events = summarize(&state.events);
                drop(state);
                return Err(BaresipError::Timeout {
                    what: format!("answer to `{command} {params}`"),
                    timeout: COMMAND_TIMEOUT,
                    events,
                    log_tail: self.log_tail(TAIL_LINES),
                });
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - current)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the oldest event of one of `kinds` (matching `accept`) not yet returned by a
    /// wait, and marks it returned.
    fn wait_event_or(
        &self,
        kinds: &[&str],
        accept: &dyn Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, BaresipError> {
        let deadline = now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let found = state
                .events
                .iter()
                .enumerate()
                .find(|(i, e)| {
                    !state.taken.contains(i) && kinds.contains(&e.kind.as_str()) && accept(e)
                })
                .map(|(i, e)| (i, e.clone()));
            if let Some((i, event)) = found {
                state.taken.insert(i);
                return Ok(event);
            }
            let current = now();
            if state.closed.is_some() || current >= deadline {
                let events = summarize(&state.events);
                drop(state);
                return Err(BaresipError::Timeout {
                    what: kinds.join(" or "),
                    timeout,
                    events,
                    log_tail: self.log_tail(TAIL_LINES),
                });
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - current)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the next event of kind `kind` (for example `"CALL_RINGING"`), oldest first,
    /// each returned once.
    pub fn wait_event(&self, kind: &str, timeout: Duration) -> Result<Event, BaresipError> {
        self.wait_event_or(&[kind], &|_| true, timeout)
    }

    /// Waits until every account with a registration interval is registered: a
    /// `REGISTER_OK` event, or `reginfo` listing it `OK` (baresip registers as soon as it
    /// starts, usually before the control connection is up, so the event is often missed).
    /// A failure (`REGISTER_FAIL`, or `reginfo` saying `ERR`: a final error response such
    /// as 401/403 to the authenticated REGISTER, or no answer) is an error at once.
    pub fn wait_registered(&mut self, timeout: Duration) -> Result<(), BaresipError> {
        let deadline = now() + timeout;
        let pending: Vec<String> = self
            .options
            .accounts
            .iter()
            .filter(|a| a.regint > 0)
            .map(Account::aor)
            .collect();
        for aor in pending {
            loop {
                let remaining = deadline.saturating_duration_since(now());
                let step = remaining.min(Duration::from_millis(250));
                match self.wait_event_or(
                    &["REGISTER_OK", "REGISTER_FAIL"],
                    &|e| e.account == aor,
                    step,
                ) {
                    Ok(e) if e.kind == "REGISTER_OK" => break,
                    Ok(e) => {
                        return Err(BaresipError::RegisterFailed {
                            account: aor,
                            reason: e.param,
                            log_tail: self.log_tail(TAIL_LINES),
                        });
                    }
                    Err(BaresipError::Timeout { .. }) => {}
                    Err(e) => return Err(e),
                }
                match self.reginfo_status(&aor)? {
                    Some(true) => break,
                    Some(false) => {
                        return Err(BaresipError::RegisterFailed {
                            reason: self.register_failure(&aor),
                            account: aor,
                            log_tail: self.log_tail(TAIL_LINES),
                        });
                    }
                    None => {}
                }
                if now() >= deadline {
                    let events = summarize(&self.events());
                    return Err(BaresipError::Timeout {
                        what: format!("registration of {aor}"),
                        timeout,
                        events,
                        log_tail: self.log_tail(TAIL_LINES),
                    });
                }
            }
        }
        Ok(())
    }

    /// `reginfo`'s status of `aor`: `Some(true)` OK, `Some(false)` ERR, `None` not yet.
    fn reginfo_status(&mut self, aor: &str) -> Result<Option<bool>, BaresipError> {
        let info = self.command("reginfo", "")?;
        for line in info.lines().map(strip_ansi) {
            let mut words = line.split_whitespace().skip_while(|w| *w == ">");
            if words.next() != Some(aor) {
                continue;
            }
            return Ok(match words.next() {
                Some("OK") => Some(true),
                Some("ERR") => Some(false),
                _ => None,
            });
        }
        Ok(None)
    }

    /// The reason baresip logged for the last failed registration of `aor`
    /// (`reg: <aor>: 401 Unauthorized (…)`).
    fn register_failure(&self, aor: &str) -> String {
        let needle = format!("reg: {aor}: ");
        self.log()
            .split(['\n', '\r'])
            .filter_map(|l| {
                l.split_once(&needle)
                    .map(|(_, reason)| reason.trim().to_owned())
            })
            .next_back()
            .unwrap_or_else(|| "reginfo says ERR".to_owned())
    }

    /// Calls `uri` from the current account (the first unless changed).
    pub fn dial(&mut self, uri: &str) -> Result<(), BaresipError> {
        self.command("dial", uri).map(drop)
    }

    /// Calls `uri` from the account `aor` (made current with `uafind`).
    pub fn dial_from(&mut self, aor: &str, uri: &str) -> Result<(), BaresipError> {
        self.command("uafind", aor)?;
        self.dial(uri)
    }

    /// Answers the ringing incoming call (for accounts without auto-answer).
    pub fn accept(&mut self) -> Result<(), BaresipError> {
        self.command("accept", "").map(drop)
    }

    /// Hangs up the current call.
    pub fn hangup(&mut self) -> Result<(), BaresipError> {
        self.command("hangup", "").map(drop)
    }

    /// `callstat`: baresip's debug text of the current call.
    pub fn callstat(&mut self) -> Result<String, BaresipError> {
        self.command("callstat", "")
    }

    /// Waits for the next call to be established (`CALL_ESTABLISHED`); an error naming the
    /// reason when the call closes first (`CALL_CLOSED`: refused, unreachable, …).
    pub fn wait_call_established(&self, timeout: Duration) -> Result<Event, BaresipError> {
        let event = self.wait_event_or(&["CALL_ESTABLISHED", "CALL_CLOSED"], &|_| true, timeout)?;
        if event.kind == "CALL_CLOSED" {
            return Err(BaresipError::CallFailed {
                reason: event.param,
                log_tail: self.log_tail(TAIL_LINES),
            });
        }
        Ok(event)
    }

    /// Waits for the next incoming call (`CALL_INCOMING`).
    pub fn wait_incoming(&self, timeout: Duration) -> Result<Event, BaresipError> {
        self.wait_event("CALL_INCOMING", timeout)
    }

    /// Waits for the next call to close (`CALL_CLOSED`); the event's `param` is the reason.
    pub fn wait_call_closed(&self, timeout: Duration) -> Result<Event, BaresipError> {
        self.wait_event("CALL_CLOSED", timeout)
    }

    /// The RTP counts of every ended call, in order.
    pub fn call_summaries(&self) -> Vec<CallSummary> {
        parse_summaries(&self.log())
    }

    /// Waits until baresip has printed the RTP counts of the next ended call (printed when
    /// the call closes), each returned once.
    pub fn wait_call_summary(&mut self, timeout: Duration) -> Result<CallSummary, BaresipError> {
        let deadline = now() + timeout;
        loop {
            let summaries = self.call_summaries();
            if let Some(summary) = summaries.get(self.summaries_taken) {
                self.summaries_taken += 1;
                return Ok(*summary);
            }
            if now() >= deadline {
                return Err(BaresipError::Timeout {
                    what: "RTP summary of an ended call".to_owned(),
                    timeout,
                    events: summarize(&self.events()),
                    log_tail: self.log_tail(TAIL_LINES),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The recordings of received (decoded) audio, oldest first (`sndfile` names them by the
    /// second the call's audio started).
    pub fn received_recordings(&self) -> Vec<PathBuf> {
        recordings(&self.recordings_dir(), "-dec.wav")
    }

    /// The recordings of sent audio, oldest first.
    pub fn sent_recordings(&self) -> Vec<PathBuf> {
        recordings(&self.recordings_dir(), "-enc.wav")
    }

    /// The newest recording of received audio, analysed (complete once the call closed).
    pub fn received_audio(&self) -> Result<AudioAnalysis, BaresipError> {
        let dir = self.recordings_dir();
        let path = self
            .received_recordings()
            .pop()
            .ok_or_else(|| BaresipError::Recording {
                path: dir,
                reason: "no recording of received audio".to_owned(),
            })?;
        analyze_wav(&path)
    }

    /// Stops baresip: `quit`, then SIGKILL if still running after 3 s; idempotent.
    pub fn stop(&mut self) {
        if self.reader.is_none() {
            return;
        }
        let json = "{\"command\":\"quit\",\"params\":\"\",\"token\":\"quit\"}";
        let _ = self
            .ctrl
            .write_all(format!("{}:{json},", json.len()).as_bytes());
        let deadline = now() + STOP_TIMEOUT;
        {
            let mut state = self.shared.lock();
            while state.closed.is_none() {
                let current = now();
                if current >= deadline {
                    break;
                }
                state = self
                    .shared
                    .changed
                    .wait_timeout(state, deadline - current)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.process.kill();
        let _ = self.ctrl.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.process.kill();
        let _ = self.ctrl.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The harness's clock: deadlines of real processes are wall-clock time.
#[allow(clippy::disallowed_methods)] // a harness bounding real processes, not a sans-IO core
fn now() -> Instant {
    Instant::now()
}

fn config_text(sip_port: u16, ctrl_port: u16, tone: &Path, recordings: &Path) -> String {
    format!(
        "# written by testkit::baresip\n\
         poll_method\t\tepoll\n\
         sip_listen\t\t127.0.0.1:{sip_port}\n\
         net_interface\t\t127.0.0.1\n\
         call_local_timeout\t30\n\
         call_max_calls\t\t4\n\
         audio_source\t\taufile,{tone}\n\
         audio_player\t\taubridge,calanque-speaker\n\
         audio_alert\t\taubridge,calanque-alert\n\
         ausrc_srate\t\t8000\n\
         auplay_srate\t\t8000\n\
         ausrc_channels\t\t1\n\
         auplay_channels\t\t1\n\
         audio_level\t\tno\n\
         rtp_stats\t\tyes\n\
         rtcp_mux\t\tno\n\
         jitter_buffer_delay\t5-10\n\
         module_path\t\t{MODULE_PATH}\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\taubridge.so\n\
         module\t\t\tsndfile.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         module_app\t\tctrl_tcp.so\n\
         snd_path\t\t{recordings}\n\
         ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n",
        tone = tone.display(),
        recordings = recordings.display(),
    )
}

/// A port free for UDP and TCP on 127.0.0.1 whose next port is free for TCP too (baresip's
/// TLS listener), never 5060/5061.
fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if port == 0 || port >= u16::MAX - 1 || (5059..=5061).contains(&port) {
            continue;
        }
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
        let next = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1));
        if udp.is_ok() && next.is_ok() {
            return port;
        }
    }
    free_port()
}

/// Writes a 16-bit mono PCM WAV of a sine at `hz`, `seconds` long, at `sample_rate`, at half
/// of full scale (the 44-byte canonical header).
pub fn write_tone_wav(path: &Path, hz: u32, seconds: u32, sample_rate: u32) -> std::io::Result<()> {
    let samples = u64::from(seconds) * u64::from(sample_rate);
    let data_len = u32::try_from(samples * 2).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "WAV longer than 4 GiB")
    })?;
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"RIFF")?;
    out.write_all(&(36 + data_len).to_le_bytes())?;
    out.write_all(b"WAVEfmt ")?;
    out.write_all(&16u32.to_le_bytes())?;
    out.write_all(&1u16.to_le_bytes())?; // PCM
    out.write_all(&1u16.to_le_bytes())?; // mono
    out.write_all(&sample_rate.to_le_bytes())?;
    out.write_all(&(sample_rate * 2).to_le_bytes())?; // byte rate
    out.write_all(&2u16.to_le_bytes())?; // block align
    out.write_all(&16u16.to_le_bytes())?; // bits per sample
    out.write_all(b"data")?;
    out.write_all(&data_len.to_le_bytes())?;
    let step = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(sample_rate);
    for i in 0..samples {
        let value = (16_000.0 * (step * i as f64).sin()).round() as i16;
        out.write_all(&value.to_le_bytes())?;
    }
    out.flush()
}

/// Reads a 16-bit PCM WAV (any chunk layout; a data size left at 0 or too large by a writer
/// that did not finish means "to the end of the file") and analyses its first channel.
pub fn analyze_wav(path: &Path) -> Result<AudioAnalysis, BaresipError> {
    let fail = |reason: &str| BaresipError::Recording {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let bytes = std::fs::read(path).map_err(|e| fail(&e.to_string()))?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(fail("not a RIFF/WAVE file"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut pos = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32_at(pos + 4) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= bytes.len() {
            format = Some((
                u16_at(body),
                u16_at(body + 2),
                u32_at(body + 4),
                u16_at(body + 14),
            ));
        } else if id == b"data" {
            let end = if len == 0 || body + len > bytes.len() {
                bytes.len()
            } else {
                body + len
            };
            data = Some(&bytes[body..end]);
            break;
        }
        pos = body + len + (len & 1);
    }
    let (tag, channels, sample_rate, bits) = format.ok_or_else(|| fail("no fmt chunk"))?;
    if tag != 1 || bits != 16 || channels == 0 {
        return Err(fail(&format!(
            "not 16-bit PCM (format {tag}, {bits} bits, {channels} channels)"
        )));
    }
    let data = data.ok_or_else(|| fail("no data chunk"))?;
    let frame = 2 * usize::from(channels);
    let samples: Vec<i16> = data
        .chunks_exact(frame)
        .map(|f| i16::from_le_bytes([f[0], f[1]]))
        .collect();
    let loud = i32::from(i16::MAX) / 16;
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    let sum_sq: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = if samples.is_empty() {
        0.0
    } else {
        (sum_sq / samples.len() as f64).sqrt()
    };
    let loud_samples = samples
        .iter()
        .filter(|&&s| i32::from(s).abs() >= loud)
        .count();
    // Zero crossings between the first and the last loud sample.
    let first = samples.iter().position(|&s| i32::from(s).abs() >= loud);
    let last = samples.iter().rposition(|&s| i32::from(s).abs() >= loud);
    let frequency_hz = match (first, last) {
        (Some(first), Some(last)) if last > first && sample_rate > 0 => {
            let span = &samples[first..=last];
            let crossings = span.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
            crossings as f64 / 2.0 / (span.len() as f64 / f64::from(sample_rate))
        }
        _ => 0.0,
    };
    Ok(AudioAnalysis {
        path: path.to_path_buf(),
        sample_rate,
        samples: samples.len(),
        peak,
        rms,
        loud_samples,
        frequency_hz,
    })
}

fn recordings(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(suffix))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Parses the blocks baresip prints at the end of a call with `rtp_stats yes`:
///
/// ```text
/// audio           Transmit:     Receive:
/// packets:            522          521
/// avg. bitrate:      64.1         64.0  (kbit/s)
/// errors:               0            0
/// pkt.report:         500          500
/// lost:                 0            0
/// ```
fn parse_summaries(log: &str) -> Vec<CallSummary> {
    let lines: Vec<&str> = log.split(['\n', '\r']).collect();
    let mut summaries = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !(line.starts_with("audio") && line.contains("Transmit:") && line.contains("Receive:")) {
            continue;
        }
        let mut summary = CallSummary::default();
        let mut complete = false;
        // The SIP trace (`-s`) may interleave its own lines: skip what does not parse.
        for next in lines.iter().skip(i + 1).take(40) {
            if next.contains("Transmit:") {
                break;
            }
            let Some((key, rest)) = next.split_once(':') else {
                continue;
            };
            let numbers: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let (Some(&tx), Some(&rx)) = (numbers.first(), numbers.get(1)) else {
                continue;
            };
            match key.trim() {
                "packets" if !complete => {
                    summary.tx_packets = tx;
                    summary.rx_packets = rx;
                    complete = true;
                }
                "errors" => summary.rx_errors = rx,
                "lost" => {
                    summary.tx_lost = tx;
                    summary.rx_lost = rx;
                    break;
                }
                _ => {}
            }
        }
        if complete {
            summaries.push(summary);
        }
    }
    summaries
}

fn summarize(events: &[Event]) -> String {
    let kinds: Vec<String> = events
        .iter()
        .filter(|e| e.kind != "CALL_RTCP")
        .map(|e| {
            if e.param.is_empty() {
                e.kind.clone()
            } else {
                format!("{}({})", e.kind, e.param)
            }
        })
        .collect();
    format!("[{}]", kinds.join(", "))
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The value of the top-level `"key"` of a flat JSON object: a string (unescaped) or a
/// literal (`true`, a number) as written.
fn json_field(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    let rest = json[start..].trim_start();
    if let Some(body) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().to_owned())
    }
}

/// Reads netstrings (`<len>:<json>,`) until the connection closes.
fn read_events(mut stream: TcpStream, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let reason = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break "closed".to_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break e.to_string(),
        }
        let mut messages = Vec::new();
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(&buf[..colon])
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
            else {
                // Not a netstring: drop up to the colon and resynchronise.
                buf.drain(..=colon);
                continue;
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[colon + 1..colon + 1 + len]).into_owned();
            buf.drain(..colon + 1 + len + 1);
            messages.push(text);
        }
        if messages.is_empty() {
            continue;
        }
        let mut state = shared.lock();
        for text in messages {
            if json_field(&text, "response").as_deref() == Some("true") {
                let token = json_field(&text, "token").unwrap_or_default();
                let ok = json_field(&text, "ok").as_deref() == Some("true");
                let data = json_field(&text, "data").unwrap_or_default();
                state.responses.push((token, ok, data));
            } else if json_field(&text, "event").as_deref() == Some("true") {
                state.events.push(Event {
                    kind: json_field(&text, "type").unwrap_or_default(),
                    account: json_field(&text, "accountaor").unwrap_or_default(),
                    peer: json_field(&text, "peeruri").unwrap_or_default(),
                    call_id: json_field(&text, "id").unwrap_or_default(),
                    param: json_field(&text, "param").unwrap_or_default(),
                    raw: text,
                });
            }
        }
        drop(state);
        shared.changed.notify_all();
    };
    shared.lock().closed = Some(reason);
    shared.changed.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_end_of_call_summary() {
        let log = "call: terminate call 'x'\n\naudio           Transmit:     Receive:\n\
                   packets:            522          521\n\
                   avg. bitrate:      64.1         64.0  (kbit/s)\n\
                   errors:               0            0\n\
                   pkt.report:         500          500\n\
                   lost:                 0            3\n\
                   jitter:             0.8          1.2  (ms)\n";
        let summaries = parse_summaries(log);
        assert_eq!(
            summaries,
            vec![CallSummary {
                tx_packets: 522,
                rx_packets: 521,
                tx_lost: 0,
                rx_lost: 3,
                rx_errors: 0,
            }]
        );
    }

    #[test]
    fn reads_json_fields() {
        let json = r#"{"event":true,"type":"CALL_CLOSED","peeruri":"sip:a\/b","param":"x \"y\""}"#;
        assert_eq!(json_field(json, "event").as_deref(), Some("true"));
        assert_eq!(json_field(json, "type").as_deref(), Some("CALL_CLOSED"));
        assert_eq!(json_field(json, "peeruri").as_deref(), Some("sip:a/b"));
        assert_eq!(json_field(json, "param").as_deref(), Some("x \"y\""));
        assert_eq!(json_field(json, "token"), None);
    }

    #[test]
    fn the_tone_is_analysed_as_a_tone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tone.wav");
        write_tone_wav(&path, 1000, 2, 8000).expect("wav");
        assert_eq!(
            std::fs::metadata(&path).expect("metadata").len(),
            44 + 2 * 16_000
        );
        let a = analyze_wav(&path).expect("analysis");
        assert_eq!(a.samples, 16_000);
        assert_eq!(a.sample_rate, 8000);
        assert!((a.frequency_hz - 1000.0).abs() < 10.0, "{a:?}");
        assert!(a.peak >= 15_900, "{a:?}");
    }

    #[test]
    fn account_lines() {
        let user = SipUser::numbered(3, "calanque.test");
        let line = Account::registered(&user, "127.0.0.1:5999".parse().expect("addr")).line();
        assert_eq!(
            line,
            "<sip:user3@calanque.test>;auth_user=user3;auth_pass=pw3;\
             outbound=\"sip:127.0.0.1:5999;transport=udp\";regint=600;answermode=auto"
        );
        assert_eq!(
            Account::direct("a").line(),
            "<sip:a@127.0.0.1>;regint=0;answermode=auto"
        );
    }
}
