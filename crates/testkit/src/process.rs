//! A child process owned by a test: started in its own temporary directory, waited on until
//! it accepts TCP connections, killed (and reaped) when the guard drops.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Why a component could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The program is not installed; `make test` installs it (scripts/ensure-deps.sh).
    #[error("{program} not found on PATH: run `make deps` (scripts/ensure-deps.sh) to install it")]
    NotInstalled { program: String },
    /// Spawning or preparing the process failed.
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The process exited or did not listen in time; its log tail is included.
    #[error("{program} did not become ready within {timeout:?}; log tail:\n{log_tail}")]
    NotReady {
        program: String,
        timeout: Duration,
        log_tail: String,
    },
    /// Generating or writing the certificates of a test PKI failed.
    #[error("test certificates ({step}): {source}")]
    Certificates {
        step: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again
/// immediately, and tests use distinct ports so reuse races stay unlikely).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// True when `program` resolves on PATH.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A running child process with its working directory and log file.
#[derive(Debug)]
pub struct ManagedProcess {
    program: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl ManagedProcess {
    /// Spawns `program args…` in a fresh temporary directory, output to `<dir>/<program>.log`,
    /// and waits until every address in `ready_on` accepts a TCP connection.
    pub fn start(
        program: &str,
        args: &[String],
        ready_on: &[SocketAddr],
        timeout: Duration,
    ) -> Result<ManagedProcess, HarnessError> {
        if !installed(program) {
            return Err(HarnessError::NotInstalled {
                program: program.to_owned(),
            });
        }
        let spawn_err = |source| HarnessError::Spawn {
            program: program.to_owned(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("calanque-{program}-"))
            .tempdir()
            .map_err(spawn_err)?;
        let log = dir.path().join(format!("{program}.log"));
        let out = std::fs::File::create(&log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(spawn_err)?;
        let mut process = ManagedProcess {
            program: program.to_owned(),
            child: Some(child),
            dir,
            log,
        };
        process.wait_ready(ready_on, timeout)?;
        Ok(process)
    }

    fn wait_ready(
        &mut self,
        ready_on: &[SocketAddr],
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let step = Duration::from_millis(25);
        let mut waited = Duration::ZERO;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if !exited
                && ready_on
                    .iter()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
            {
                return Ok(());
            }
            if exited || waited >= timeout {
                return Err(HarnessError::NotReady {
                    program: self.program.clone(),
                    timeout,
                    log_tail: self.log_tail(40),
                });
            }
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// The working directory (data lives under it and goes with the guard).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of the process's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The OS process id, for tests that kill -9 or stop it on purpose.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (SIGKILL) and reaps it; idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
