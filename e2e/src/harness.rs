//! The harness: owns the topology and every process of a run, brings the two datacenters up in
//! stages, lets a scenario break them, and tears everything down.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::FailoverView;
use crate::binaries::Binaries;
use crate::cluster::{self, ETCD_CLIENT_PORT, Member};
use crate::datacenter::{Datacenter, FailoverTiming, ServiceConfig};
use crate::netns::{self, DC_A, DC_B, SITE_1, Topology, WITNESS};
use crate::process::{NsProcess, ProcessSpec, run_in};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// The SIP realm and directory domain.
    pub realm: String,
    pub timing: FailoverTiming,
    /// Bound on one service logging its ready line.
    pub ready_timeout: Duration,
    /// Bound on the clusters becoming healthy (etcd elected a leader and answers on every
    /// member; every NATS server routed to both others).
    pub cluster_timeout: Duration,
    /// Fleet phones to seed beside the small city (`test_phone::directory::add_phones`).
    pub fleet_phones: u32,
    /// Anchor the site's calls on the media relays.
    pub relay: bool,
}

impl Default for HarnessOptions {
    fn default() -> HarnessOptions {
        HarnessOptions {
            realm: "calanque.test".to_owned(),
            timing: FailoverTiming::default(),
            ready_timeout: Duration::from_secs(30),
            cluster_timeout: Duration::from_secs(30),
            fleet_phones: 0,
            relay: false,
        }
    }
}

/// Bound on one `cq-e2e` probe (they carry their own shorter timeouts).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on seeding the directory (a few hundred entries through one transaction).
const SEED_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a run started. Dropping it kills every process, removes the etcd data and
/// deletes the namespaces; the logs stay in [`Harness::run_dir`].
#[derive(Debug)]
pub struct Harness {
    /// Declared before `topology`: processes die before their namespaces are deleted.
    processes: Vec<NsProcess>,
    topology: Topology,
    run_dir: PathBuf,
    bins: Binaries,
    probe_bin: PathBuf,
    members: Vec<Member>,
    datacenters: Vec<Datacenter>,
    config: ServiceConfig,
    options: HarnessOptions,
}

/// What [`Harness::shutdown`] verified.
#[derive(Debug, Clone)]
pub struct TeardownReport {
    pub took: Duration,
    /// Processes killed in the harness's namespaces (ours and anything they forked).
    pub pids_killed: usize,
    pub run_dir: PathBuf,
}

impl Harness {
    /// Everything: the network, both clusters, the directory seeded, both datacenters'
    /// services and their failover controllers, each ready. The failover state may not exist
    /// yet when this returns (the leader creates it within a lease round: see
    /// [`Harness::wait_failover`]).
    pub fn start(options: HarnessOptions) -> Result<Harness> {
        let started = Instant::now();
        let mut harness = Harness::new(options)?;
        harness.start_clusters()?;
        harness.seed_directory()?;
        harness.start_services()?;
        harness.start_failover_controllers()?;
        tracing::info!(took = ?started.elapsed(), run_dir = %harness.run_dir.display(), "two datacenters up");
        Ok(harness)
    }

    /// The network only ([`Topology::standard`]) and the run directory; nothing runs yet.
    pub fn new(options: HarnessOptions) -> Result<Harness> {
        let bins = Binaries::locate()?;
        let probe_bin = bins.calanque("cq-e2e")?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let run_dir = std::env::temp_dir().join(format!("cq-e2e-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(run_dir.join("data"))
            .with_context(|| format!("creating {}", run_dir.display()))?;
        // Printed, not only logged: the path is what someone debugging a failed run needs.
        eprintln!("cq-e2e: logs of this run in {}", run_dir.display());
        let topology = Topology::standard()?;
        let location = |name: &str, namespace: &str| -> Result<(String, String, Ipv4Addr)> {
            Ok((
                name.to_owned(),
                namespace.to_owned(),
                topology.address(namespace)?,
            ))
        };
        let members = [("dc-a", DC_A), ("dc-b", DC_B), ("witness", WITNESS)]
            .iter()
            .map(|(name, ns)| {
                location(name, ns).map(|(name, namespace, address)| Member {
                    name,
                    namespace,
                    address,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let datacenters = [("dc-a", DC_A), ("dc-b", DC_B)]
            .iter()
            .map(|(name, ns)| {
                location(name, ns).map(|(name, namespace, address)| Datacenter {
                    name,
                    namespace,
                    address,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let config = ServiceConfig {
            realm: options.realm.clone(),
            etcd: cluster::etcd_endpoints(&members),
            nats: cluster::nats_urls(&members),
        };
        Ok(Harness {
            processes: Vec::new(),
            topology,
            run_dir,
            bins,
            probe_bin,
            members,
            datacenters,
            config,
            options,
        })
    }

    /// Starts the three etcd and the three NATS members and waits until both clusters are
    /// healthy.
    pub fn start_clusters(&mut self) -> Result<()> {
        let started = Instant::now();
        for member in self.members.clone() {
            let data = self.run_dir.join("data").join(member.etcd_process());
            let spec = member.etcd_spec(&self.bins.etcd, &self.members, &data);
            self.spawn(spec)?;
            let spec = member.nats_spec(&self.bins.nats_server, &self.members);
            self.spawn(spec)?;
        }
        self.wait_etcd_healthy(self.options.cluster_timeout)?;
        self.wait_nats_routed(self.options.cluster_timeout)?;
        tracing::info!(took = ?started.elapsed(), "etcd and NATS clusters healthy");
        Ok(())
    }

    /// Writes the small test city into etcd (from cq-site-1, through all three members).
    pub fn seed_directory(&self) -> Result<()> {
        let mut args = vec![
            "seed".to_owned(),
            "--etcd".to_owned(),
            self.config.etcd.clone(),
            "--realm".to_owned(),
            self.config.realm.clone(),
            "--fleet".to_owned(),
            self.options.fleet_phones.to_string(),
        ];
        if self.options.relay {
            args.push("--relay".to_owned());
        }
        run_in(SITE_1, &self.probe_bin, &args, SEED_TIMEOUT).context("seeding the directory")?;
        Ok(())
    }

    /// Starts directory, media, edge and call-control in both datacenters at once, then waits
    /// for each one's ready line.
    pub fn start_services(&mut self) -> Result<()> {
        let mut names = Vec::new();
        for datacenter in self.datacenters.clone() {
            for spec in datacenter.service_specs(&self.bins, &self.config)? {
                names.push(spec.name.clone());
                self.spawn(spec)?;
            }
        }
        self.wait_all_ready(&names)
    }

    /// Starts one failover controller per datacenter (dc-a the primary) and one at the witness
    /// (`failover-w`, the tie-breaker in a partition between the datacenters, ADR 0018), and
    /// waits until each is ready. The witness is probed on its etcd member's `/health`.
    pub fn start_failover_controllers(&mut self) -> Result<()> {
        let witness = self.topology.address(WITNESS)?;
        let witness_url = format!("http://{witness}:{ETCD_CLIENT_PORT}/health");
        let mut places: Vec<_> = self
            .datacenters
            .iter()
            .map(|dc| dc.failover_place(&self.config))
            .collect();
        places.push(crate::datacenter::witness_failover_place(
            witness,
            &self.config,
        ));
        let mut names = Vec::new();
        for place in places {
            let spec = crate::datacenter::failover_spec(
                place,
                &self.bins,
                &self.config,
                &self.datacenters,
                &witness_url,
                self.options.timing,
            )?;
            names.push(spec.name.clone());
            self.spawn(spec)?;
        }
        self.wait_all_ready(&names)
    }

    fn wait_all_ready(&mut self, names: &[String]) -> Result<()> {
        let timeout = self.options.ready_timeout;
        for name in names {
            let took = self.process(name)?.wait_ready(timeout)?;
            tracing::debug!(name, ?took, "ready");
        }
        Ok(())
    }

    /// Starts a process of the harness's keeping (killed with it); does not wait for it.
    pub fn spawn(&mut self, spec: ProcessSpec) -> Result<&mut NsProcess> {
        if self.processes.iter().any(|p| p.name() == spec.name) {
            bail!("a process named {} already exists", spec.name);
        }
        let process = NsProcess::start(spec, &self.run_dir)?;
        self.processes.push(process);
        self.processes.last_mut().context("just pushed")
    }

    /// The process named `name` (`etcd-dc-a`, `nats-witness`, `directory-a`, `media-b`,
    /// `edge-a`, `cc-b`, `failover-a`, …).
    pub fn process(&mut self, name: &str) -> Result<&mut NsProcess> {
        self.processes
            .iter_mut()
            .find(|p| p.name() == name)
            .with_context(|| format!("no process named {name}"))
    }

    pub fn processes(&self) -> &[NsProcess] {
        &self.processes
    }

    /// kill -9 of one process (it stays known: [`NsProcess::restart`] brings it back).
    pub fn kill(&mut self, name: &str) -> Result<()> {
        self.process(name)?.kill();
        Ok(())
    }

    /// kill -9 of every process in `namespace` (a datacenter's machines all lost at once, its
    /// etcd and NATS members with them). Returns the names killed.
    pub fn kill_location(&mut self, namespace: &str) -> Vec<String> {
        let mut killed = Vec::new();
        for process in &mut self.processes {
            if process.namespace() == namespace && process.pid().is_some() {
                process.kill();
                killed.push(process.name().to_owned());
            }
        }
        killed
    }

    /// Restarts (SIGKILL if running, same arguments) and waits for the ready line.
    pub fn restart(&mut self, name: &str) -> Result<Duration> {
        let timeout = self.options.ready_timeout;
        self.process(name)?.restart(timeout)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Cut, heal, isolate and rejoin locations.
    pub fn topology_mut(&mut self) -> &mut Topology {
        &mut self.topology
    }

    /// Where the logs are (kept after the run).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn datacenters(&self) -> &[Datacenter] {
        &self.datacenters
    }

    /// The datacenter named `name` (`dc-a`).
    pub fn datacenter(&self, name: &str) -> Result<&Datacenter> {
        self.datacenters
            .iter()
            .find(|d| d.name == name)
            .with_context(|| format!("no datacenter {name}"))
    }

    /// The realm and the `--etcd`/`--nats` lists every service is given.
    pub fn service_config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// Runs `cq-e2e args…` inside `namespace`; its stdout.
    pub fn probe(&self, namespace: &str, args: &[String]) -> Result<String> {
        run_in(namespace, &self.probe_bin, args, PROBE_TIMEOUT)
    }

    /// One SIP OPTIONS from `from` to `target` (retransmitted for up to 2 s); the final status.
    pub fn sip_options(&self, from: &str, target: SocketAddrV4) -> Result<u16> {
        let out = self.probe(
            from,
            &[
                "sip-options".to_owned(),
                target.to_string(),
                "--realm".to_owned(),
                self.config.realm.clone(),
            ],
        )?;
        out.trim()
            .parse()
            .with_context(|| format!("cq-e2e sip-options printed {out:?}"))
    }

    /// GET `url` from inside `from`; the body of a 2xx answer.
    pub fn http_get(&self, from: &str, url: &str) -> Result<String> {
        self.probe(from, &["http-get".to_owned(), url.to_owned()])
    }

    /// The etcd members `from` can reach now (itself, and those it is not cut from).
    pub fn reachable_members(&self, from: &str) -> Vec<Member> {
        let cut: Vec<(&str, &str)> = self.topology.cuts().collect();
        self.members
            .iter()
            .filter(|m| {
                !cut.iter().any(|(a, b)| {
                    (*a == from && *b == m.namespace) || (*b == from && *a == m.namespace)
                })
            })
            .cloned()
            .collect()
    }

    /// The failover state read from inside `from` through the etcd members it can reach;
    /// `None` before the first leader wrote it.
    pub fn failover_state(&self, from: &str) -> Result<Option<FailoverView>> {
        let endpoints = cluster::etcd_endpoints(&self.reachable_members(from));
        let out = self.probe(
            from,
            &["failover-state".to_owned(), "--etcd".to_owned(), endpoints],
        )?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("cq-e2e failover-state printed {out:?}"))
    }

    /// Polls the failover state from `from` until `condition` holds; returns it and how long
    /// it took. Probe errors (a store without quorum for a moment) count as "not yet".
    pub fn wait_failover(
        &self,
        from: &str,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&FailoverView) -> bool,
    ) -> Result<(FailoverView, Duration)> {
        let started = Instant::now();
        loop {
            let last = match self.failover_state(from) {
                Ok(Some(view)) if condition(&view) => return Ok((view, started.elapsed())),
                Ok(view) => format!("{view:?}"),
                Err(error) => format!("error: {error:#}"),
            };
            if started.elapsed() > timeout {
                bail!(
                    "the failover state was not {what} within {timeout:?} (read from {from}); \
                     last: {last}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until `target` answers SIP OPTIONS with 200 from `from`; how long it took.
    pub fn wait_sip_ok(
        &self,
        from: &str,
        target: SocketAddrV4,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let outcome = self.sip_options(from, target);
            if matches!(outcome, Ok(200)) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{target} did not answer OPTIONS with 200 from {from} within {timeout:?}: {outcome:?}"
                );
            }
        }
    }

    /// True when `member` answers its `/health` with `"health":"true"` (it sees a leader and
    /// a quorum read works), asked from inside `from`.
    pub fn etcd_healthy(&self, from: &str, member: &Member) -> bool {
        self.http_get(from, &format!("{}/health", member.etcd_client_url()))
            .is_ok_and(|body| body.contains("\"health\":\"true\""))
    }

    /// Waits until every etcd member is healthy, asked from each member's own namespace.
    pub fn wait_etcd_healthy(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        for member in self.members.clone() {
            while !self.etcd_healthy(&member.namespace, &member) {
                if !self.process(&member.etcd_process())?.is_running()
                    || started.elapsed() > timeout
                {
                    let tail = self.process(&member.etcd_process())?.log_tail(20);
                    bail!(
                        "etcd member {} not healthy within {timeout:?}:\n{tail}",
                        member.name
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The server names `member`'s NATS server has routes to (`/routez`), asked from `from`.
    pub fn nats_routes(&self, from: &str, member: &Member) -> Result<Vec<String>> {
        let body = self.http_get(from, &member.nats_monitor_url("/routez"))?;
        let routez: serde_json::Value = serde_json::from_str(&body)?;
        let mut names: Vec<String> = routez["routes"]
            .as_array()
            .map(|routes| {
                routes
                    .iter()
                    .filter_map(|r| r["remote_name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // Route pooling opens several connections per peer: one name each.
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Waits until each NATS server logged its ready line and has routes to both others.
    pub fn wait_nats_routed(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        for member in self.members.clone() {
            self.process(&member.nats_process())?.wait_ready(timeout)?;
            let want = self.members.len() - 1;
            loop {
                let routes = self.nats_routes(&member.namespace, &member);
                if routes.as_ref().is_ok_and(|r| r.len() >= want) {
                    break;
                }
                if started.elapsed() > timeout {
                    bail!(
                        "nats {} not routed to {want} peers within {timeout:?}: {routes:?}",
                        member.name
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Tears everything down now and checks it: every process killed, every `cq-*` namespace
    /// deleted, no process left in them. Errors say what survived.
    pub fn shutdown(mut self) -> Result<TeardownReport> {
        let started = Instant::now();
        let mut pids: Vec<i32> = Vec::new();
        for (name, _) in self.topology.nodes() {
            pids.extend(netns::namespace_pids(name));
        }
        self.processes.clear();
        self.remove_data();
        self.topology.destroy()?;
        // Checked while the machine-wide lock is still held: no other run's namespaces yet.
        let left = netns::leftover_namespaces()?;
        let alive: Vec<i32> = pids.iter().copied().filter(|pid| is_alive(*pid)).collect();
        let report = TeardownReport {
            took: started.elapsed(),
            pids_killed: pids.len(),
            run_dir: self.run_dir.clone(),
        };
        drop(self);
        if !left.is_empty() || !alive.is_empty() {
            bail!("teardown left namespaces {left:?} and processes {alive:?}");
        }
        Ok(report)
    }

    /// The etcd data (64 MB of preallocated WAL per member) goes; the logs stay.
    fn remove_data(&self) {
        let _ = std::fs::remove_dir_all(self.run_dir.join("data"));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.processes.clear();
        self.remove_data();
        // `topology` drops next and deletes the namespaces.
    }
}

/// True when `pid` exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses.
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}
