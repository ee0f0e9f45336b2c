//! SIPp (`sipp`, Debian's `sip-tester`) as a child process on loopback: a builder for one run
//! of a scenario from `e2e/sipp/`, bounded in time, whose outcome is read from SIPp's exit code
//! and its statistics file; its error, message and `<log>` traces go to a temporary directory
//! and their tails go into the failure report, so that a failing test says why.
//!
//! SIPp's exit codes: 0 every call succeeded, 1 at least one call failed, 97 stopped by an
//! internal command, 99 exited without processing a call, 255 fatal error (bad scenario,
//! unreadable injection file), 254 could not bind its socket.
//!
//! SIPp 3.6.1 does not expand `[fieldN]` inside `[authentication username=… password=…]`, but
//! it does expand a keyword that comes whole from an injected field: [`write_users_csv`] writes
//! the injection file the scenarios expect (see `e2e/sipp/README.md`).

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::installed;

const PROGRAM: &str = "sipp";
/// The global bound (`-timeout`) when the caller sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after its own `-timeout` SIPp gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Lines of each trace quoted in a failure report.
const TAIL_LINES: usize = 40;

/// Why a SIPp run could not produce an outcome, or produced the wrong one.
#[derive(thiserror::Error)]
pub enum SippError {
    /// `sipp` is not on PATH; `make deps` installs it (Debian package sip-tester).
    #[error("sipp not found on PATH: run `make deps` (scripts/ensure-deps.sh installs sip-tester)")]
    NotInstalled,
    /// Preparing the run or spawning SIPp failed.
    #[error("starting sipp: {0}")]
    Spawn(#[from] std::io::Error),
    /// SIPp ran past its own global timeout plus a grace period and was killed.
    #[error("sipp did not exit within {bound:?} and was killed\n{report}")]
    Hung { bound: Duration, report: String },
    /// SIPp could not run the scenario (exit code 255/254/99/97 or killed by a signal).
    #[error("sipp could not run {scenario} (exit code {exit_code:?})\n{report}")]
    Fatal {
        scenario: String,
        exit_code: Option<i32>,
        report: String,
    },
    /// The calls did not end as expected.
    #[error(
        "{scenario}: expected {want_ok} successful and {want_failed} failed calls, got \
         {got_ok} successful and {got_failed} failed (exit code {exit_code})\n{report}"
    )]
    Unexpected {
        scenario: String,
        want_ok: u64,
        want_failed: u64,
        got_ok: u64,
        got_failed: u64,
        exit_code: i32,
        report: String,
    },
}

// `expect` prints an error with `Debug`: print the report with its line breaks.
impl fmt::Debug for SippError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The transport of the run: one socket for all calls (`-t u1` / `-t t1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`.
    Udp,
    /// `-t t1`: one TCP connection for all calls.
    Tcp,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// The path of a scenario shipped in `e2e/sipp/` (for example `"register_md5.xml"`).
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../e2e/sipp")
        .join(name)
}

/// One SIP user as the scenarios' injection file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUser {
    pub username: String,
    pub domain: String,
    pub password: String,
}

impl SipUser {
    /// `user<i>` with password `pw<i>` in `domain` (the convention of the Kamailio harness and
    /// the bench).
    pub fn numbered(i: usize, domain: &str) -> SipUser {
        SipUser {
            username: format!("user{i}"),
            domain: domain.to_owned(),
            password: format!("pw{i}"),
        }
    }
}

/// Writes a SEQUENTIAL injection file: `field0` username, `field1` domain, `field2` password,
/// `field3` `[authentication username=… password=…]` with the right password, `field4` the
/// same with a wrong one (`wrong-<password>`).
pub fn write_users_csv(path: &Path, users: &[SipUser]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "SEQUENTIAL")?;
    for u in users {
        writeln!(
            out,
            "{user};{domain};{pw};[authentication username={user} password={pw}];\
             [authentication username={user} password=wrong-{pw}]",
            user = u.username,
            domain = u.domain,
            pw = u.password,
        )?;
    }
    out.flush()
}

/// Writes a SEQUENTIAL injection file from raw rows (fields joined with `;`), for scenarios
/// with their own layout such as `register_sha256.xml` (username; domain; Authorization line).
pub fn write_rows_csv(path: &Path, rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "SEQUENTIAL")?;
    for row in rows {
        writeln!(out, "{}", row.join(";"))?;
    }
    out.flush()
}

/// A SIPp run being configured: `SippRun::new(scenario, remote)…run()`.
#[derive(Debug, Clone)]
pub struct SippRun {
    scenario: PathBuf,
    remote: SocketAddr,
    local_port: Option<u16>,
    media_port: Option<u16>,
    transport: Transport,
    inf: Option<PathBuf>,
    service: Option<String>,
    auth: Option<(String, String)>,
    auth_uri: Option<String>,
    calls: u64,
    rate: Option<(u32, u32)>,
    limit: Option<u32>,
    timeout: Duration,
    timeout_error: bool,
    trace_msg: bool,
    keys: Vec<(String, String)>,
    extra: Vec<String>,
}

impl SippRun {
    /// A run of `scenario` (a file path, see [`scenario`]) against `remote` (a loopback
    /// address): by default UDP, one call, a free local port, a 30 s global bound.
    pub fn new(scenario: impl Into<PathBuf>, remote: SocketAddr) -> SippRun {
        SippRun {
            scenario: scenario.into(),
            remote,
            local_port: None,
            media_port: None,
            transport: Transport::Udp,
            inf: None,
            service: None,
            auth: None,
            auth_uri: None,
            calls: 1,
            rate: None,
            limit: None,
            timeout: DEFAULT_TIMEOUT,
            timeout_error: false,
            trace_msg: true,
            keys: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// `-p`: the local port (default: a free port from [`crate::process::free_port`]).
    pub fn local_port(mut self, port: u16) -> SippRun {
        self.local_port = Some(port);
        self
    }

    /// `-mp`: the local RTP port, the `[media_port]` of the scenarios' SDP and the source
    /// port of `play_pcap_audio` (SIPp's default, 6000, is shared by every run that omits it).
    pub fn media_port(mut self, port: u16) -> SippRun {
        self.media_port = Some(port);
        self
    }

    /// `-t u1` or `-t t1`.
    pub fn transport(mut self, transport: Transport) -> SippRun {
        self.transport = transport;
        self
    }

    /// `-inf`: the injection CSV (see [`write_users_csv`]).
    pub fn inf(mut self, csv: impl Into<PathBuf>) -> SippRun {
        self.inf = Some(csv.into());
        self
    }

    /// `-s`: the `[service]` keyword.
    pub fn service(mut self, service: &str) -> SippRun {
        self.service = Some(service.to_owned());
        self
    }

    /// `-au` / `-ap`: the credentials of a bare `[authentication]`.
    pub fn auth(mut self, username: &str, password: &str) -> SippRun {
        self.auth = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// `-auth_uri`: the digest `uri` SIPp uses (`sip:<value>`; SIPp's default is the remote
    /// address). Set it to the domain so that it equals the REGISTER's Request-URI.
    pub fn auth_uri(mut self, uri: &str) -> SippRun {
        self.auth_uri = Some(uri.to_owned());
        self
    }

    /// `-m`: the number of calls, after which SIPp exits.
    pub fn calls(mut self, calls: u64) -> SippRun {
        self.calls = calls;
        self
    }

    /// `-r` / `-rp`: `calls` new calls every `period_ms` milliseconds.
    pub fn rate(mut self, calls: u32, period_ms: u32) -> SippRun {
        self.rate = Some((calls, period_ms));
        self
    }

    /// `-l`: at most this many calls at once.
    pub fn limit(mut self, limit: u32) -> SippRun {
        self.limit = Some(limit);
        self
    }

    /// `-timeout`: SIPp's global bound (always passed; default 30 s). The harness kills SIPp
    /// if it has not exited 10 s after it.
    pub fn timeout(mut self, timeout: Duration) -> SippRun {
        self.timeout = timeout;
        self
    }

    /// `-timeout_error`: reaching the global timeout is a failure (exit code 1) rather than
    /// a normal end.
    pub fn timeout_error(mut self, on: bool) -> SippRun {
        self.timeout_error = on;
        self
    }

    /// `-trace_msg` (on by default): every message into the run's directory. Turn it off for
    /// load runs.
    pub fn trace_msg(mut self, on: bool) -> SippRun {
        self.trace_msg = on;
        self
    }

    /// `-key name value`: the `[name]` keyword.
    pub fn key(mut self, name: &str, value: &str) -> SippRun {
        self.keys.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Any other SIPp argument, appended as is.
    pub fn arg(mut self, arg: &str) -> SippRun {
        self.extra.push(arg.to_owned());
        self
    }

    fn scenario_name(&self) -> String {
        self.scenario
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The full argument list for a run whose traces go into `dir`.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let local_port = self.local_port.unwrap_or_else(crate::process::free_port);
        let mut args = vec![
            self.remote.to_string(),
            "-sf".to_owned(),
            self.scenario.to_string_lossy().into_owned(),
            "-i".to_owned(),
            self.remote.ip().to_string(),
            "-p".to_owned(),
            local_port.to_string(),
            "-t".to_owned(),
            self.transport.flag().to_owned(),
            "-m".to_owned(),
            self.calls.to_string(),
            "-timeout".to_owned(),
            format!("{}ms", self.timeout.as_millis()),
            "-nostdin".to_owned(),
            "-trace_stat".to_owned(),
            "-stf".to_owned(),
            p("stat.csv"),
            "-trace_err".to_owned(),
            "-error_file".to_owned(),
            p("errors.log"),
            "-trace_logs".to_owned(),
            "-log_file".to_owned(),
            p("logs.log"),
        ];
        if self.trace_msg {
            args.extend(["-trace_msg".to_owned(), "-message_file".to_owned()]);
            args.push(p("messages.log"));
        }
        if let Some(port) = self.media_port {
            args.extend(["-mp".to_owned(), port.to_string()]);
        }
        if let Some(inf) = &self.inf {
            args.extend(["-inf".to_owned(), inf.to_string_lossy().into_owned()]);
        }
        if let Some(service) = &self.service {
            args.extend(["-s".to_owned(), service.clone()]);
        }
        if let Some((user, password)) = &self.auth {
            args.extend([
                "-au".to_owned(),
                user.clone(),
                "-ap".to_owned(),
                password.clone(),
            ]);
        }
        if let Some(uri) = &self.auth_uri {
            args.extend(["-auth_uri".to_owned(), uri.clone()]);
        }
        if let Some((calls, period_ms)) = self.rate {
            args.extend(["-r".to_owned(), calls.to_string()]);
            args.extend(["-rp".to_owned(), period_ms.to_string()]);
        }
        if let Some(limit) = self.limit {
            args.extend(["-l".to_owned(), limit.to_string()]);
        }
        if self.timeout_error {
            args.push("-timeout_error".to_owned());
        }
        for (name, value) in &self.keys {
            args.extend(["-key".to_owned(), name.clone(), value.clone()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts SIPp in the background; the guard kills it when dropped.
    pub fn spawn(self) -> Result<SippBackground, SippError> {
        if !installed(PROGRAM) {
            return Err(SippError::NotInstalled);
        }
        let dir = tempfile::Builder::new()
            .prefix("calanque-sipp-")
            .tempdir()?;
        let args = self.args(dir.path());
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))?;
        let stderr = stdout.try_clone()?;
        let child = Command::new(PROGRAM)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()?;
        Ok(SippBackground {
            child: Some(child),
            run: self,
            args,
            path: dir.path().to_path_buf(),
            dir: Some(dir),
        })
    }

    /// Runs SIPp to the end (bounded by its `-timeout` plus 10 s) and returns its outcome,
    /// whether or not every call succeeded; `Err` when it could not run the scenario.
    pub fn run(self) -> Result<SippOutcome, SippError> {
        self.spawn()?.wait()
    }

    /// Runs SIPp and checks that exactly `successful` calls succeeded and `failed` failed.
    pub fn expect(self, successful: u64, failed: u64) -> Result<SippOutcome, SippError> {
        let outcome = self.run()?;
        outcome.check(successful, failed)?;
        Ok(outcome)
    }
}

/// A SIPp run in the background; killed (and reaped) when dropped.
#[derive(Debug)]
pub struct SippBackground {
    child: Option<Child>,
    run: SippRun,
    args: Vec<String>,
    /// Taken by the outcome in [`SippBackground::wait`].
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SippBackground {
    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory holding the run's traces.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Kills SIPp now (SIGKILL); idempotent. Its statistics up to then may be incomplete.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for SIPp to exit (bounded by its `-timeout` plus 10 s, then killed) and reads
    /// its outcome.
    pub fn wait(mut self) -> Result<SippOutcome, SippError> {
        let bound = self.run.timeout + EXIT_GRACE;
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        let status = loop {
            let Some(child) = self.child.as_mut() else {
                break None;
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                break Some(status);
            }
            if waited >= bound {
                self.kill();
                return Err(SippError::Hung {
                    bound,
                    report: report(&self.path, &self.args),
                });
            }
            std::thread::sleep(step);
            waited += step;
        };
        let exit_code = status.and_then(|s| s.code());
        let scenario = self.run.scenario_name();
        let stats_csv = read(&self.path, "stat.csv");
        let counts = parse_stats(&stats_csv);
        let (Some(code @ (0 | 1)), Some(counts)) = (exit_code, counts) else {
            return Err(SippError::Fatal {
                scenario,
                exit_code,
                report: report(&self.path, &self.args),
            });
        };
        let Some(dir) = self.dir.take() else {
            return Err(SippError::Spawn(std::io::Error::other(
                "run directory already taken",
            )));
        };
        Ok(SippOutcome {
            scenario,
            exit_code: code,
            successful_calls: counts.successful,
            failed_calls: counts.failed,
            elapsed: counts.elapsed,
            stats_csv,
            errors: read(&self.path, "errors.log"),
            logs: read(&self.path, "logs.log"),
            args: std::mem::take(&mut self.args),
            dir,
        })
    }
}

impl Drop for SippBackground {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippOutcome {
    /// The scenario's file name.
    pub scenario: String,
    /// 0 when every call succeeded, 1 when at least one failed.
    pub exit_code: i32,
    /// `SuccessfulCall(C)` of the statistics file.
    pub successful_calls: u64,
    /// `FailedCall(C)` of the statistics file.
    pub failed_calls: u64,
    /// From SIPp's start to the end of the run (`CurrentTime - StartTime`, microseconds).
    pub elapsed: Duration,
    /// The statistics file (`-trace_stat`), `;`-separated.
    pub stats_csv: String,
    /// The error trace (`-trace_err`): unexpected messages, failed checks.
    pub errors: String,
    /// The `<log>` actions' output (`-trace_logs`); scenarios log `FAIL …` lines there.
    pub logs: String,
    /// The arguments SIPp was run with.
    pub args: Vec<String>,
    dir: tempfile::TempDir,
}

impl SippOutcome {
    /// The directory of the run's traces (`messages.log`, `stdout.log`, …); it goes with the
    /// outcome.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every call succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.exit_code == 0 && self.failed_calls == 0
    }

    /// Successful calls per second of `elapsed` (0 when nothing elapsed).
    pub fn calls_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.successful_calls as f64 / secs
        } else {
            0.0
        }
    }

    /// `Ok` when exactly `successful` calls succeeded and `failed` failed; otherwise an error
    /// quoting the tails of the run's traces.
    pub fn check(&self, successful: u64, failed: u64) -> Result<(), SippError> {
        if self.successful_calls == successful && self.failed_calls == failed {
            return Ok(());
        }
        Err(SippError::Unexpected {
            scenario: self.scenario.clone(),
            want_ok: successful,
            want_failed: failed,
            got_ok: self.successful_calls,
            got_failed: self.failed_calls,
            exit_code: self.exit_code,
            report: self.report(),
        })
    }

    /// The tails of the run's traces, for failure messages.
    pub fn report(&self) -> String {
        report(self.dir.path(), &self.args)
    }

    /// A column of the last line of the statistics file, by its header name (for example
    /// `"FailedRegexpDoesntMatch(C)"`).
    pub fn stat(&self, column: &str) -> Option<String> {
        stat_column(&self.stats_csv, column)
    }

    /// A counter column of the statistics file as a number (0 when absent).
    pub fn stat_count(&self, column: &str) -> u64 {
        self.stat(column)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The message trace (`-trace_msg`), empty when it was off.
    pub fn messages(&self) -> String {
        read(self.dir.path(), "messages.log")
    }
}

struct Counts {
    successful: u64,
    failed: u64,
    elapsed: Duration,
}

fn stat_column(csv: &str, column: &str) -> Option<String> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let index = header.iter().position(|h| h.trim() == column)?;
    last.get(index).map(|v| (*v).to_owned())
}

fn parse_stats(csv: &str) -> Option<Counts> {
    let count = |column: &str| stat_column(csv, column)?.trim().parse::<u64>().ok();
    Some(Counts {
        successful: count("SuccessfulCall(C)")?,
        failed: count("FailedCall(C)")?,
        elapsed: elapsed(csv).unwrap_or_default(),
    })
}

/// `CurrentTime - StartTime` of the last line: SIPp writes both as
/// `date<TAB>time<TAB>epoch.micros` (its `ElapsedTime` columns have whole seconds only).
fn elapsed(csv: &str) -> Option<Duration> {
    let epoch = |column: &str| -> Option<f64> {
        stat_column(csv, column)?
            .split_whitespace()
            .next_back()?
            .parse()
            .ok()
    };
    let secs = epoch("CurrentTime")? - epoch("StartTime")?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn report(dir: &Path, args: &[String]) -> String {
    let mut out = format!("command: sipp {}\n", args.join(" "));
    for (name, what) in [
        ("logs.log", "scenario log (-trace_logs)"),
        ("errors.log", "error trace (-trace_err)"),
        ("stdout.log", "sipp output"),
    ] {
        let text = read(dir, name);
        if !text.trim().is_empty() {
            out.push_str(&format!(
                "--- {what}, last {TAIL_LINES} lines ---\n{}\n",
                tail(&text, TAIL_LINES)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "StartTime;CurrentTime;SuccessfulCall(P);\
        SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
        2026-01-01\t10:00:00.000000\t100.000000;2026-01-01\t10:00:00.000000\t100.000000;0;0;0;0;\n\
        2026-01-01\t10:00:00.000000\t100.000000;2026-01-01\t10:00:02.250000\t102.250000;3;7;0;2;\n";

    #[test]
    fn reads_the_cumulative_counters_of_the_last_line() {
        let counts = parse_stats(STATS).expect("counters");
        assert_eq!(counts.successful, 7);
        assert_eq!(counts.failed, 2);
        assert_eq!(counts.elapsed, Duration::from_millis(2250));
        assert_eq!(
            stat_column(STATS, "SuccessfulCall(P)").as_deref(),
            Some("3")
        );
        assert!(parse_stats("").is_none());
    }

    #[test]
    fn writes_the_injection_file_the_scenarios_expect() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.csv");
        write_users_csv(&path, &[SipUser::numbered(7, "calanque.test")]).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "SEQUENTIAL\nuser7;calanque.test;pw7;[authentication username=user7 password=pw7];\
             [authentication username=user7 password=wrong-pw7]\n"
        );
    }

    #[test]
    fn always_bounds_the_run_and_keeps_traces_in_the_run_directory() {
        let run = SippRun::new(
            scenario("options_keepalive.xml"),
            "127.0.0.1:5070".parse().expect("addr"),
        )
        .local_port(40000)
        .transport(Transport::Tcp)
        .media_port(40010)
        .key("expires", "60");
        let args = run.args(Path::new("/tmp/x"));
        let joined = args.join(" ");
        assert!(joined.starts_with("127.0.0.1:5070 -sf "), "{joined}");
        assert!(
            joined.contains("-p 40000 -t t1 -m 1 -timeout 30000ms"),
            "{joined}"
        );
        assert!(joined.contains("-stf /tmp/x/stat.csv"), "{joined}");
        assert!(joined.contains("-key expires 60"), "{joined}");
        assert!(joined.contains("-mp 40010"), "{joined}");
    }
}
