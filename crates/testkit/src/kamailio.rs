//! A real Kamailio registrar on a free loopback port (UDP and TCP on the same port): the
//! reference peer the SIPp scenarios in `e2e/sipp/` are validated against before they run
//! against calanque's SIP edge.
//!
//! The configuration is `scripts/kamailio/registrar.cfg`, embedded here and shared with
//! `scripts/bench-register.sh`: the harness passes the same `-A` defines (db_text directory,
//! realm, expiry bounds). Users `user1..=userN` with password `pw<i>` are written to a
//! db_text `subscriber` table with plaintext passwords (auth_db `calculate_ha1`); bindings
//! live in memory (usrloc `db_mode` 0).
//!
//! Kamailio runs without root (`-w`/`-Y` in its temporary directory, no `-u`/`-g`), in the
//! foreground with its children (`-DD`; a single `-D` would not fork them), logging to
//! stderr (`-E`), in its own process group so that the guard stops the main process and its
//! children together.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{HarnessError, free_port, installed};
use crate::sipp::SipUser;

/// The registrar configuration (`scripts/kamailio/registrar.cfg`).
pub const REGISTRAR_CFG: &str = include_str!("../../../scripts/kamailio/registrar.cfg");

const PROGRAM: &str = "kamailio";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start Kamailio.
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    /// Digest realm and the domain users register in.
    pub realm: String,
    /// Users `user1..=users` with passwords `pw<i>`.
    pub users: usize,
    /// Worker processes per listening socket (`-n`).
    pub children: u32,
    /// Shared memory in MB (`-m`).
    pub shm_mb: u32,
    /// Private memory per process in MB (`-M`).
    pub pkg_mb: u32,
    /// Expires below this is answered 423 with Min-Expires.
    pub min_expires: u32,
    /// Expires above this is lowered to it.
    pub max_expires: u32,
    /// Shared memory allocator (`-x`: `qm`, `fm` or `tlsf`); Kamailio's default when `None`.
    pub allocator: Option<String>,
}

impl Default for KamailioOptions {
    fn default() -> KamailioOptions {
        KamailioOptions {
            realm: "calanque.test".to_owned(),
            users: 100,
            children: 8,
            shm_mb: 64,
            pkg_mb: 8,
            min_expires: 60,
            max_expires: 3600,
            allocator: None,
        }
    }
}

/// The Kamailio binary: `$CALANQUE_KAMAILIO`, else `kamailio` on PATH, else Debian's
/// `/usr/sbin/kamailio` (not on a non-root PATH).
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CALANQUE_KAMAILIO") {
        return Some(PathBuf::from(path));
    }
    if installed(PROGRAM) {
        return Some(PathBuf::from(PROGRAM));
    }
    let debian = Path::new("/usr/sbin/kamailio");
    debian.is_file().then(|| debian.to_path_buf())
}

/// Writes the db_text directory Kamailio's auth_db reads: `version` and `subscriber` with
/// users `user1..=users` (password `pw<i>`) in `realm`.
pub fn write_db(dir: &Path, realm: &str, users: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("version"),
        "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n0:location:9\n",
    )?;
    let mut table = String::from(
        "id(int,auto) username(string) domain(string) password(string) ha1(string,null) \
         ha1b(string,null) \n",
    );
    for i in 1..=users {
        let u = SipUser::numbered(i, realm);
        table.push_str(&format!(
            "{i}:{}:{}:{}::\n",
            u.username, u.domain, u.password
        ));
    }
    std::fs::write(dir.join("subscriber"), table)
}

/// A running Kamailio registrar; stopped (the whole process group) when dropped.
#[derive(Debug)]
pub struct Kamailio {
    child: Option<Child>,
    port: u16,
    options: KamailioOptions,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio with the default options (100 users in `calanque.test`, 8 children).
    pub fn start() -> Result<Kamailio, HarnessError> {
        Kamailio::start_with(KamailioOptions::default())
    }

    /// Starts Kamailio on a free loopback port and waits until it answers OPTIONS (200) and
    /// an unauthenticated REGISTER (401) over UDP and accepts TCP connections.
    pub fn start_with(options: KamailioOptions) -> Result<Kamailio, HarnessError> {
        let program = binary().ok_or_else(|| HarnessError::NotInstalled {
            program: PROGRAM.to_owned(),
        })?;
        let spawn_err = |source| HarnessError::Spawn {
            program: PROGRAM.to_owned(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("calanque-kamailio-")
            .tempdir()
            .map_err(spawn_err)?;
        let db = dir.path().join("db");
        write_db(&db, &options.realm, options.users).map_err(spawn_err)?;
        let cfg = dir.path().join("registrar.cfg");
        std::fs::write(&cfg, REGISTRAR_CFG).map_err(spawn_err)?;
        let port = free_udp_and_tcp_port();
        let log = dir.path().join("kamailio.log");
        let out = std::fs::File::create(&log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let args = args(&options, &cfg, &db, dir.path(), port);
        let child = Command::new(&program)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        let mut kamailio = Kamailio {
            child: Some(child),
            port,
            options,
            dir,
            log,
        };
        kamailio.wait_ready()?;
        Ok(kamailio)
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if !exited && self.answers() {
                return Ok(());
            }
            if exited || waited >= READY_TIMEOUT {
                return Err(HarnessError::NotReady {
                    program: PROGRAM.to_owned(),
                    timeout: READY_TIMEOUT,
                    log_tail: self.log_tail(40),
                });
            }
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// OPTIONS → 200 and REGISTER → 401 over UDP, and a TCP connection.
    fn answers(&self) -> bool {
        let addr = self.addr();
        let options = probe(addr, "OPTIONS", &format!("sip:{addr}"), "");
        let register = probe(
            addr,
            "REGISTER",
            &format!("sip:{}", self.options.realm),
            "user1",
        );
        options
            .as_deref()
            .is_some_and(|r| r.starts_with("SIP/2.0 200"))
            && register
                .as_deref()
                .is_some_and(|r| r.starts_with("SIP/2.0 401"))
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }

    /// `127.0.0.1:<port>` (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The SIP port (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The realm (and domain) users register in.
    pub fn realm(&self) -> &str {
        &self.options.realm
    }

    /// User `i` (1-based, at most `options.users`).
    pub fn user(&self, i: usize) -> SipUser {
        SipUser::numbered(i, &self.options.realm)
    }

    /// The options it was started with.
    pub fn options(&self) -> &KamailioOptions {
        &self.options
    }

    /// The main process id (the process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory (configuration, db_text tables, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of Kamailio's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops Kamailio and its children: SIGTERM to the process group, SIGKILL after 5 s;
    /// idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while waited < STOP_TIMEOUT {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(step);
            waited += step;
        }
        // Children that outlive the main process, or a main process that ignored SIGTERM.
        signal("-KILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

fn args(options: &KamailioOptions, cfg: &Path, db: &Path, dir: &Path, port: u16) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut args = vec![
        "-f".to_owned(),
        cfg.to_string_lossy().into_owned(),
        "-A".to_owned(),
        format!("DBURL=\"text://{}\"", db.to_string_lossy()),
        "-A".to_owned(),
        format!("REALM=\"{}\"", options.realm),
        "-A".to_owned(),
        format!("MINEXP={}", options.min_expires),
        "-A".to_owned(),
        format!("MAXEXP={}", options.max_expires),
        "-l".to_owned(),
        format!("udp:127.0.0.1:{port}"),
        "-l".to_owned(),
        format!("tcp:127.0.0.1:{port}"),
        "-n".to_owned(),
        options.children.to_string(),
        "-m".to_owned(),
        options.shm_mb.to_string(),
        "-M".to_owned(),
        options.pkg_mb.to_string(),
        "-w".to_owned(),
        dir.clone(),
        "-Y".to_owned(),
        dir,
        "-DD".to_owned(),
        "-E".to_owned(),
    ];
    if let Some(allocator) = &options.allocator {
        args.extend(["-x".to_owned(), allocator.clone()]);
    }
    args
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..50 {
        let port = free_port();
        if port != 0 && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// Sends one request over UDP and returns the first response's text, if any within 300 ms.
fn probe(addr: SocketAddr, method: &str, uri: &str, user: &str) -> Option<String> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let local = socket.local_addr().ok()?;
    let user = if user.is_empty() { "probe" } else { user };
    let host = uri.trim_start_matches("sip:");
    let request = format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{port};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{host}>;tag=probe{port}\r\n\
         To: <sip:{user}@{host}>\r\n\
         Call-ID: probe-{port}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:{user}@{local}>\r\n\
         Content-Length: 0\r\n\r\n",
        port = local.port(),
    );
    socket.send_to(request.as_bytes(), addr).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
