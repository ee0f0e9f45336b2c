//! A process started inside a network namespace (`ip netns exec <ns> <program> …`), its output
//! in a log file of the run directory, and the ways a scenario ends it: kill -9, SIGTERM,
//! restart with the same arguments. Killed when dropped, so a panicking test leaves nothing.
//!
//! `ip netns exec` joins the namespace and then *execs* the program, so the pid we hold is the
//! program's own. Each process leads a process group of its own: signals go to the group, so
//! anything it forked goes with it, and a Ctrl-C in the terminal running the tests reaches only
//! the test (the harness then tears everything down).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// What to run, where, and how to know it is ready. Kept so that a restart runs the same.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Unique within a harness (`etcd-dc-a`, `edge-b`, …); names the log file.
    pub name: String,
    /// The network namespace it runs in (`cq-dc-a`, …).
    pub namespace: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A substring of a log line the process writes once it serves; `None`: ready when started
    /// (the caller checks readiness otherwise, e.g. etcd's /health).
    pub ready_line: Option<String>,
}

impl ProcessSpec {
    pub fn new(name: &str, namespace: &str, program: impl Into<PathBuf>) -> ProcessSpec {
        ProcessSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            program: program.into(),
            args: Vec::new(),
            // Every calanque binary logs with tracing; plain text so the ready lines match.
            // `CQ_E2E_LOG` (a tracing filter) gives more detail when a scenario is investigated.
            env: vec![
                (
                    "RUST_LOG".to_owned(),
                    std::env::var("CQ_E2E_LOG").unwrap_or_else(|_| "info".to_owned()),
                ),
                ("NO_COLOR".to_owned(), "1".to_owned()),
            ],
            ready_line: None,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> ProcessSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> ProcessSpec {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn ready_line(mut self, line: &str) -> ProcessSpec {
        self.ready_line = Some(line.to_owned());
        self
    }
}

/// A running (or stopped) process of the harness. Dropping it kills it.
#[derive(Debug)]
pub struct NsProcess {
    spec: ProcessSpec,
    log: PathBuf,
    child: Option<Child>,
    /// Where the current run's output starts in the log (restarts append to the same file),
    /// so a ready line of an earlier run does not count.
    log_offset: u64,
    /// How many times it was spawned (1 after `start`).
    starts: u32,
}

impl NsProcess {
    /// Spawns the process with its output appended to `<log_dir>/<name>.log`; does not wait for
    /// it to be ready ([`NsProcess::wait_ready`]).
    pub fn start(spec: ProcessSpec, log_dir: &Path) -> Result<NsProcess> {
        let log = log_dir.join(format!("{}.log", spec.name));
        let mut process = NsProcess {
            spec,
            log,
            child: None,
            log_offset: 0,
            starts: 0,
        };
        process.spawn()?;
        Ok(process)
    }

    /// Starts the process again with its arguments (after [`NsProcess::stop`] or a kill).
    pub fn spawn(&mut self) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.starts += 1;
        // A visible boundary between runs of the same service in its log.
        writeln!(
            file,
            "===== cq-e2e: start #{} of {} in {}: {} {}",
            self.starts,
            self.spec.name,
            self.spec.namespace,
            self.spec.program.display(),
            self.spec.args.join(" ")
        )?;
        self.log_offset = file.metadata()?.len();
        let stderr = file.try_clone()?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.spec.namespace])
            .arg(&self.spec.program)
            .args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .process_group(0);
        for (key, value) in &self.spec.env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "spawning {} in {} ({})",
                self.spec.name,
                self.spec.namespace,
                self.spec.program.display()
            )
        })?;
        tracing::debug!(name = %self.spec.name, pid = child.id(), "started");
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    pub fn namespace(&self) -> &str {
        &self.spec.namespace
    }

    /// The log file (kept after the run for debugging).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid of the current run, while it has not been killed or stopped by us.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the current run has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Waits until the current run logs its ready line (immediately true without one). Fails
    /// at once if the process exits first, and after `timeout`; the error carries the log tail.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let Some(line) = self.spec.ready_line.clone() else {
            return Ok(Duration::ZERO);
        };
        loop {
            if self.current_output()?.contains(&line) {
                return Ok(started.elapsed());
            }
            if !self.is_running() {
                bail!(
                    "{} exited before logging {line:?}; log {}:\n{}",
                    self.spec.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} did not log {line:?} within {timeout:?}; log {}:\n{}",
                    self.spec.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True when the current run has logged a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.current_output().is_ok_and(|out| out.contains(text))
    }

    /// The current run's output so far.
    pub fn current_output(&self) -> Result<String> {
        let mut file = File::open(&self.log)?;
        file.seek(SeekFrom::Start(self.log_offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The last `lines` lines of the log (all runs), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// kill -9 of the process group (a crash, or a machine lost), and reap; idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(&child, Signal::SIGKILL);
            // Reaps; SIGKILL cannot be ignored, so this returns promptly.
            let _ = child.wait();
            tracing::info!(name = %self.spec.name, "killed (SIGKILL)");
        }
    }

    /// SIGTERM (a graceful stop: edges drain, controllers resign), then SIGKILL if it has not
    /// exited within `grace`. Returns how long it took to exit, `None` when it had to be killed.
    pub fn stop(&mut self, grace: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        signal_group(&child, Signal::SIGTERM);
        while started.elapsed() < grace {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                tracing::info!(name = %self.spec.name, took = ?started.elapsed(), "stopped (SIGTERM)");
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(&child, Signal::SIGKILL);
        let _ = child.wait();
        tracing::warn!(name = %self.spec.name, ?grace, "did not stop on SIGTERM: killed");
        None
    }

    /// Kills the current run if any (SIGKILL) and starts the same command again, appending to
    /// the same log; waits for the ready line (if any) within `timeout`.
    pub fn restart(&mut self, timeout: Duration) -> Result<Duration> {
        self.kill();
        self.spawn()?;
        self.wait_ready(timeout)
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal_group(child: &Child, signal: Signal) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    // The group is the child's own (process_group(0)); ESRCH means it is already gone.
    if killpg(Pid::from_raw(pid), signal).is_err() {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Runs `program args` inside `namespace` to completion, killed after `timeout`; returns its
/// stdout, or an error with its stderr when it fails. For the short probes of `cq-e2e`.
pub fn run_in(
    namespace: &str,
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawning {} in {namespace}", program.display()))?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > timeout {
            signal_group(&child, Signal::SIGKILL);
            let _ = child.wait();
            bail!(
                "{} {} in {namespace} did not finish within {timeout:?}",
                program.display(),
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{} {} in {namespace} failed ({}): {}",
            program.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
