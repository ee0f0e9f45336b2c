//! Where the programs come from: the calanque binaries and `cq-e2e` from cargo's target
//! directory (the one the running test was built into), etcd and nats-server from PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Overrides the directory holding the calanque binaries (default: the running test's own
/// `target/<profile>/`).
pub const BIN_DIR_ENV: &str = "CALANQUE_E2E_BIN_DIR";

/// The directory of the calanque binaries, and the resolved external programs.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    pub etcd: PathBuf,
    pub nats_server: PathBuf,
}

impl Binaries {
    /// Finds the binary directory (a test runs from `target/debug/deps/`, a binary from
    /// `target/debug/`) and resolves etcd and nats-server on PATH.
    pub fn locate() -> Result<Binaries> {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let exe = std::env::current_exe().context("locating the running executable")?;
                let parent = exe.parent().context("the executable has no directory")?;
                if parent.file_name().is_some_and(|n| n == "deps") {
                    parent.parent().unwrap_or(parent).to_path_buf()
                } else {
                    parent.to_path_buf()
                }
            }
        };
        Ok(Binaries {
            dir,
            etcd: on_path("etcd")?,
            nats_server: on_path("nats-server")?,
        })
    }

    /// `name` in the binary directory; an error saying how to build it when missing.
    pub fn calanque(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        if !path.is_file() {
            bail!(
                "{} is missing: build the binaries first (`cargo build --bins`; \
                 `cargo test --workspace` builds them all), or set {BIN_DIR_ENV}",
                path.display()
            );
        }
        Ok(path)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `program` on PATH, seen through a pyenv shim: the shim is a bash script starting pyenv
/// (hundreds of milliseconds, and a wrapper between us and the pid we signal), so the real
/// binary is asked from pyenv.
fn on_path(program: &str) -> Result<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .with_context(|| {
            format!("{program} is not on PATH: run `make deps` (scripts/ensure-deps.sh)")
        })?;
    if found.components().any(|c| c.as_os_str() == "shims")
        && let Ok(output) = Command::new("pyenv").args(["which", program]).output()
        && output.status.success()
    {
        let real = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if real.is_file() {
            return Ok(real);
        }
    }
    Ok(found)
}
