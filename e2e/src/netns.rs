//! The network: one Linux network namespace per location (two datacenters, the witness, the
//! phones' sites), each linked by a veth pair to a bridge that lives in a namespace of its own
//! (`cq-core`). The host's namespace is never touched: no interface, route or rule is added
//! there, so nothing a test does can reach or disturb the machine's real network.
//!
//! Links are cut with nftables inside the namespaces themselves (a `cut` set of peer addresses
//! dropped on input and output), so a cut drops packets of established connections too, and
//! both ends of a cut see the same silence a real partition gives (no RST, no ICMP).
//!
//! Every name starts with `cq-`: a crashed run's leftovers are recognisable, and
//! [`clean_leftovers`] removes them (and kills what still runs in them) before the next run.
//! One harness at a time on a machine: [`Topology::create`] takes an exclusive lock.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Every namespace and interface the harness creates starts with this.
pub const PREFIX: &str = "cq-";
/// The namespace holding the bridge; no process runs there.
pub const CORE: &str = "cq-core";
pub const DC_A: &str = "cq-dc-a";
pub const DC_B: &str = "cq-dc-b";
pub const WITNESS: &str = "cq-witness";
pub const SITE_1: &str = "cq-site-1";
const BRIDGE: &str = "cq-br0";
/// The lock serialising harnesses on one machine (they use the same fixed names).
const LOCK_FILE: &str = "/run/lock/calanque-e2e.lock";

/// The standard locations and their addresses in 10.77.0.0/24.
pub const STANDARD: [(&str, Ipv4Addr); 4] = [
    (DC_A, Ipv4Addr::new(10, 77, 0, 1)),
    (DC_B, Ipv4Addr::new(10, 77, 0, 2)),
    (WITNESS, Ipv4Addr::new(10, 77, 0, 3)),
    (SITE_1, Ipv4Addr::new(10, 77, 0, 11)),
];

/// The namespaces and links of one run; all deleted on drop. Cuts are kept so that the state of
/// the network can be reported and healed.
#[derive(Debug)]
pub struct Topology {
    nodes: Vec<(String, Ipv4Addr)>,
    /// Unordered pairs (smaller name first) currently cut.
    cuts: BTreeSet<(String, String)>,
    /// Set once the namespaces are deleted.
    destroyed: bool,
    /// Held for the topology's life; released (closed) after the namespaces are deleted.
    _lock: File,
}

impl Topology {
    /// [`Topology::create`] with [`STANDARD`].
    pub fn standard() -> Result<Topology> {
        Topology::create(&STANDARD)
    }

    /// Waits for the machine-wide harness lock, removes a crashed run's leftovers, then creates
    /// `cq-core` with its bridge and one namespace per node (loopback up, `eth0` with the
    /// node's /24 address on the bridge, an empty nftables `cut` set). Fails with the reason
    /// when network namespaces cannot be created here (not root, no CAP_SYS_ADMIN, no `ip`).
    pub fn create(nodes: &[(&str, Ipv4Addr)]) -> Result<Topology> {
        for (name, _) in nodes {
            if !name.starts_with(PREFIX) || name.len() > 15 {
                bail!("namespace {name:?} must start with {PREFIX:?} and be at most 15 bytes");
            }
        }
        let lock = File::create(LOCK_FILE)
            .or_else(|_| File::create(std::env::temp_dir().join("calanque-e2e.lock")))
            .context("creating the e2e lock file")?;
        lock.lock().context("taking the e2e lock")?;
        check_support()?;
        let removed = clean_leftovers()?;
        if !removed.is_empty() {
            tracing::warn!(?removed, "removed namespaces left by an earlier run");
        }
        let mut topology = Topology {
            nodes: Vec::new(),
            cuts: BTreeSet::new(),
            destroyed: false,
            _lock: lock,
        };
        // From here on, a failure drops `topology`, which deletes what was created.
        ip(&["netns", "add", CORE])?;
        ip(&["-n", CORE, "link", "set", "lo", "up"])?;
        ip(&["-n", CORE, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", CORE, "link", "set", BRIDGE, "up"])?;
        for (name, address) in nodes {
            topology.add_node(name, *address)?;
        }
        tracing::info!(nodes = ?topology.nodes, "network namespaces up");
        Ok(topology)
    }

    fn add_node(&mut self, name: &str, address: Ipv4Addr) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.nodes.push((name.to_owned(), address));
        // `v-dc-a` in the core, `eth0` inside the node.
        let core_end = format!("v-{}", name.trim_start_matches(PREFIX));
        ip(&[
            "-n", CORE, "link", "add", &core_end, "type", "veth", "peer", "name", "eth0", "netns",
            name,
        ])?;
        ip(&["-n", CORE, "link", "set", &core_end, "master", BRIDGE])?;
        ip(&["-n", CORE, "link", "set", &core_end, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", name, "link", "set", "eth0", "up"])?;
        nft(
            name,
            "table inet cq {\n\
             set cut { type ipv4_addr; }\n\
             chain input { type filter hook input priority 0; policy accept; ip saddr @cut drop; }\n\
             chain output { type filter hook output priority 0; policy accept; ip daddr @cut drop; }\n\
             }",
        )
    }

    /// The namespaces, with their addresses.
    pub fn nodes(&self) -> &[(String, Ipv4Addr)] {
        &self.nodes
    }

    /// The address of `namespace` on the bridge.
    pub fn address(&self, namespace: &str) -> Result<Ipv4Addr> {
        self.nodes
            .iter()
            .find(|(name, _)| name == namespace)
            .map(|(_, address)| *address)
            .with_context(|| format!("no namespace {namespace} in the topology"))
    }

    /// The pairs currently cut.
    pub fn cuts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cuts.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }

    /// Drops every packet between `a` and `b`, both directions, established connections
    /// included; both keep their links to everyone else. Idempotent.
    pub fn cut(&mut self, a: &str, b: &str) -> Result<()> {
        let (address_a, address_b) = (self.address(a)?, self.address(b)?);
        nft(a, &format!("add element inet cq cut {{ {address_b} }}"))?;
        nft(b, &format!("add element inet cq cut {{ {address_a} }}"))?;
        self.cuts.insert(pair(a, b));
        tracing::info!(a, b, "link cut");
        Ok(())
    }

    /// Undoes [`Topology::cut`]. Idempotent.
    pub fn heal(&mut self, a: &str, b: &str) -> Result<()> {
        let (address_a, address_b) = (self.address(a)?, self.address(b)?);
        if self.cuts.remove(&pair(a, b)) {
            nft(a, &format!("delete element inet cq cut {{ {address_b} }}"))?;
            nft(b, &format!("delete element inet cq cut {{ {address_a} }}"))?;
            tracing::info!(a, b, "link healed");
        }
        Ok(())
    }

    /// Cuts `namespace` from every other node: a whole location lost to everyone while its
    /// processes keep running (they see everyone else go silent). Loopback inside it works.
    pub fn isolate(&mut self, namespace: &str) -> Result<()> {
        for other in self.others(namespace)? {
            self.cut(namespace, &other)?;
        }
        Ok(())
    }

    /// Heals every cut of `namespace` (undoes [`Topology::isolate`]).
    pub fn rejoin(&mut self, namespace: &str) -> Result<()> {
        for other in self.others(namespace)? {
            self.heal(namespace, &other)?;
        }
        Ok(())
    }

    fn others(&self, namespace: &str) -> Result<Vec<String>> {
        self.address(namespace)?;
        Ok(self
            .nodes
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| name != namespace)
            .collect())
    }
}

impl Topology {
    /// Deletes every namespace now (killing whatever still runs in them: a process would keep
    /// its namespace alive after `ip netns del`). The lock is kept until the topology drops.
    pub fn destroy(&mut self) -> Result<()> {
        let mut names: Vec<String> = self.nodes.drain(..).map(|(n, _)| n).collect();
        if names.is_empty() && self.destroyed {
            return Ok(());
        }
        names.push(CORE.to_owned());
        self.destroyed = true;
        self.cuts.clear();
        let mut failures = Vec::new();
        for name in names {
            if let Err(error) = delete_namespace(&name) {
                failures.push(format!("{name}: {error:#}"));
            }
        }
        if !failures.is_empty() {
            bail!("deleting namespaces: {}", failures.join("; "));
        }
        tracing::info!("network namespaces deleted");
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(error) = self.destroy() {
            tracing::warn!(%error, "tearing the network down");
        }
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Fails with the reason when this machine cannot run the harness: `ip` or `nft` missing, or
/// namespaces not creatable (not root, or a container without CAP_SYS_ADMIN).
pub fn check_support() -> Result<()> {
    for program in ["ip", "nft"] {
        let found = Command::new(program).arg("-V").output().is_ok();
        if !found {
            bail!(
                "`{program}` is not installed: run `make deps` (apt-get install iproute2 nftables)"
            );
        }
    }
    let probe = "cq-probe";
    let _ = Command::new("ip").args(["netns", "del", probe]).output();
    ip(&["netns", "add", probe]).context(
        "network namespaces cannot be created here (the e2e harness needs root or \
         CAP_SYS_ADMIN + CAP_NET_ADMIN)",
    )?;
    let nft_works = Command::new("ip")
        .args(["netns", "exec", probe, "nft", "list", "ruleset"])
        .output()
        .is_ok_and(|o| o.status.success());
    ip(&["netns", "del", probe])?;
    if !nft_works {
        bail!("nftables does not work inside a network namespace here (no nf_tables module?)");
    }
    Ok(())
}

/// The `cq-*` namespaces that exist now.
pub fn leftover_namespaces() -> Result<Vec<String>> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("running `ip netns list`")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(PREFIX))
        .map(str::to_owned)
        .collect())
}

/// The pids of the processes running in `namespace` (`ip netns pids`).
pub fn namespace_pids(namespace: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process still in a `cq-*` namespace and deletes those namespaces (a crashed
/// run's leftovers; also what `make e2e-clean` does). Returns the namespaces removed.
pub fn clean_leftovers() -> Result<Vec<String>> {
    let names = leftover_namespaces()?;
    for name in &names {
        delete_namespace(name)?;
    }
    Ok(names)
}

fn delete_namespace(name: &str) -> Result<()> {
    for _ in 0..50 {
        let pids = namespace_pids(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ip(&["netns", "del", name])
}

/// Runs `ip` with `args`; a failure carries its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    ip_output(args).map(drop)
}

/// Runs `ip` with `args` and returns what it printed.
pub(crate) fn ip_output(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Applies an nft script inside `namespace`.
fn nft(namespace: &str, script: &str) -> Result<()> {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", script])
        .output()
        .context("running `nft` (install nftables)")?;
    if !output.status.success() {
        bail!(
            "nft in {namespace} failed on {script:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
