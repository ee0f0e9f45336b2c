//! `cq-delay`: a slow link between two network namespaces, in user space (this kernel has
//! neither netem nor NFQUEUE). It opens a TUN device in each namespace, and every IPv4 packet
//! read from one side's device for the other side's address is written into the other side's
//! device after the configured delay (jitter and loss optional), in order per direction, through
//! a bounded queue (a full queue drops and counts). The routes that send a pair's traffic into
//! the devices are [`calanque_e2e::delay::SlowLink`]'s business.
//!
//! Started by the harness inside `cq-core` (`ip netns exec`); it joins each namespace only to
//! open its device there (a TUN device belongs to the namespace its file was opened in) and
//! comes back. The devices are not persistent: they vanish when this process exits, however it
//! exits. Prints `cq-delay: ready …` once both are up, and its counters on SIGTERM/SIGINT (after
//! delivering what it still holds) or when it fails.

// The relay schedules packets on the wall clock: it is the I/O shell around the pure `Pacer`.
#![allow(clippy::disallowed_methods)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calanque_e2e::delay::{LinkShape, Pacer, READY_LINE, RelayCounters};
use clap::Parser;
use nix::libc;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, Parser)]
#[command(about = "Relays IPv4 between two network namespaces through TUN devices, delayed")]
struct Args {
    /// Side A: its namespace, its address, the device to open there (leading to B).
    #[arg(long)]
    ns_a: String,
    #[arg(long)]
    addr_a: Ipv4Addr,
    #[arg(long)]
    tun_a: String,
    /// Side B, the same.
    #[arg(long)]
    ns_b: String,
    #[arg(long)]
    addr_b: Ipv4Addr,
    #[arg(long)]
    tun_b: String,
    /// One-way delay added to every packet, each way.
    #[arg(long)]
    delay_ms: u64,
    /// Each packet's delay is drawn uniformly in delay ± jitter (never reordering).
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Packets lost per thousand, each way.
    #[arg(long, default_value_t = 0)]
    loss_per_mille: u16,
    /// Packets held at most per direction; more are dropped (and counted).
    #[arg(long, default_value_t = 4096)]
    queue_packets: usize,
    /// Seed of the jitter and loss draws (B→A uses the next one).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Where the netns bind mounts of `ip netns add` live.
const NETNS_DIR: &str = "/run/netns";
/// Larger than any packet a TUN device hands out without offloads (its MTU is 1500).
const READ_BUFFER: usize = 65_536;

#[derive(Debug, Default)]
struct Counters {
    a_to_b: AtomicU64,
    b_to_a: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    ignored: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RelayCounters {
        RelayCounters {
            a_to_b: self.a_to_b.load(Ordering::Relaxed),
            b_to_a: self.b_to_a.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    AToB,
    BToA,
}

impl Direction {
    fn delivered(self, counters: &Counters) -> &AtomicU64 {
        match self {
            Direction::AToB => &counters.a_to_b,
            Direction::BToA => &counters.b_to_a,
        }
    }
}

/// One direction's ends: read from `from`, packets for `peer` only, written into `to`.
#[derive(Debug)]
struct Leg {
    direction: Direction,
    from: Arc<File>,
    to: Arc<File>,
    peer: Ipv4Addr,
    pacer: Pacer,
}

fn main() -> ExitCode {
    calanque_e2e::init_binary_logs();
    let args = Args::parse();
    // Blocked before any thread starts (threads inherit the mask): the signals wait for the
    // main thread's sigwait, and no read or sleep is interrupted.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    if let Err(error) = signals.thread_block() {
        tracing::error!(%error, "blocking SIGTERM");
        return ExitCode::FAILURE;
    }
    let counters = Arc::new(Counters::default());
    let failed = Arc::new(AtomicBool::new(false));
    let outcome = run(&args, &signals, &counters, &failed);
    if let Err(error) = &outcome {
        tracing::error!("{error:#}");
    }
    // Whatever happened, what went through is what the harness reads.
    let _ = write_stdout(&counters.snapshot().to_line());
    if outcome.is_err() || failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(
    args: &Args,
    signals: &SigSet,
    counters: &Arc<Counters>,
    failed: &Arc<AtomicBool>,
) -> Result<()> {
    let shape = LinkShape::delay(Duration::from_millis(args.delay_ms))
        .jitter(Duration::from_millis(args.jitter_ms))
        .loss_per_mille(args.loss_per_mille);
    let home = File::open("/proc/self/ns/net").context("opening this namespace")?;
    let tun_a = open_tun_in(&args.ns_a, &args.tun_a);
    let tun_b = tun_a.is_ok().then(|| open_tun_in(&args.ns_b, &args.tun_b));
    setns(&home, CloneFlags::CLONE_NEWNET).context("returning to the relay's namespace")?;
    let tun_a = Arc::new(tun_a?);
    let tun_b = Arc::new(tun_b.context("side B not attempted")??);
    link_up(&args.ns_a, &args.tun_a)?;
    link_up(&args.ns_b, &args.tun_b)?;

    let legs = [
        Leg {
            direction: Direction::AToB,
            from: Arc::clone(&tun_a),
            to: Arc::clone(&tun_b),
            peer: args.addr_b,
            pacer: Pacer::new(shape, args.seed),
        },
        Leg {
            direction: Direction::BToA,
            from: tun_b,
            to: tun_a,
            peer: args.addr_a,
            pacer: Pacer::new(shape, args.seed.wrapping_add(1)),
        },
    ];
    for leg in legs {
        spawn_leg(leg, args.queue_packets, counters, failed)?;
    }
    write_stdout(&format!(
        "{READY_LINE}: {}/{} <-> {}/{}, {} ms ±{} ms one way, loss {}‰, queue {} packets",
        args.ns_a,
        args.tun_a,
        args.ns_b,
        args.tun_b,
        args.delay_ms,
        args.jitter_ms,
        args.loss_per_mille,
        args.queue_packets
    ))?;

    let signal = signals.wait().context("waiting for SIGTERM")?;
    tracing::info!(?signal, "stopping");
    if !failed.load(Ordering::Relaxed) {
        // The routes into the devices are removed before the relay is signalled: what it still
        // holds leaves on time instead of being lost.
        std::thread::sleep(shape.max_delay() + Duration::from_millis(50));
    }
    Ok(())
}

/// Opens a TUN device named `name` in namespace `ns` (this thread stays there: the caller
/// returns it home). Its reverse-path filter is lifted and IPv6 kept off it while here, since
/// `/proc/sys/net` shows the namespace of the thread that opens it.
fn open_tun_in(ns: &str, name: &str) -> Result<File> {
    let target = File::open(format!("{NETNS_DIR}/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    setns(&target, CloneFlags::CLONE_NEWNET).with_context(|| format!("joining {ns}"))?;
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    attach_tun(&tun, name).with_context(|| format!("creating {name} in {ns}"))?;
    // Packets from the peer arrive here while its address is also on the /24 of eth0 (and
    // only here between the two routes' additions): strict filtering would drop them.
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"), "0")
        .with_context(|| format!("lifting rp_filter on {name} in {ns}"))?;
    // No link-local address, router solicitations or MLD reports to read and ignore. A kernel
    // without IPv6 has no such setting, and nothing to keep off.
    if let Err(error) = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1")
    {
        tracing::debug!(%error, name, ns, "IPv6 left as it is");
    }
    Ok(tun)
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags at the start of the union.
#[repr(C)]
#[derive(Debug)]
struct TunRequest {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    rest: [u8; 22],
}

// The kernel copies a whole `struct ifreq`: the request must be at least that large.
const _: () = assert!(size_of::<TunRequest>() == size_of::<libc::ifreq>());

/// Makes `tun` (an open /dev/net/tun) a new TUN device `name`, packets without the
/// protocol-information prefix. The only unsafe code of the harness: the ioctl has no safe
/// wrapper in `nix`, and a TUN crate would bring a dependency tree for these few lines.
#[allow(unsafe_code)]
fn attach_tun(tun: &File, name: &str) -> Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        bail!("{name:?} is not a valid interface name");
    }
    let mut request = TunRequest {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        rest: [0; 22],
    };
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes back one `struct ifreq` at the pointer; `request` is a
    // `repr(C)` value of exactly that size (checked at compile time above) that outlives the
    // call, and the descriptor is an open /dev/net/tun owned by `tun`.
    let rc = unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETIFF,
            &mut request as *mut TunRequest,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
    }
    Ok(())
}

fn link_up(ns: &str, name: &str) -> Result<()> {
    let output = Command::new("ip")
        .args(["-n", ns, "link", "set", "dev", name, "up"])
        .output()
        .context("running `ip` (install iproute2)")?;
    if !output.status.success() {
        bail!(
            "bringing {name} up in {ns}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A reader (device → queue, stamped with its release time) and a writer (queue → peer device
/// at that time) for one direction.
fn spawn_leg(
    leg: Leg,
    capacity: usize,
    counters: &Arc<Counters>,
    failed: &Arc<AtomicBool>,
) -> Result<()> {
    let (queue, queued) = sync_channel::<(Instant, Vec<u8>)>(capacity.max(1));
    let Leg {
        direction,
        from,
        to,
        peer,
        pacer,
    } = leg;
    let reader_counters = Arc::clone(counters);
    let reader_failed = Arc::clone(failed);
    std::thread::Builder::new()
        .name(format!("read-{direction:?}"))
        .spawn(move || {
            if let Err(error) = read_loop(&from, peer, pacer, &queue, &reader_counters) {
                tracing::error!(?direction, "reading: {error:#}");
                reader_failed.store(true, Ordering::Relaxed);
                // Process-directed, so the main thread's sigwait takes it and reports.
                let _ = kill(Pid::this(), Signal::SIGTERM);
            }
        })
        .context("starting a reader")?;
    let writer_counters = Arc::clone(counters);
    std::thread::Builder::new()
        .name(format!("write-{direction:?}"))
        .spawn(move || write_loop(direction, &to, queued, &writer_counters))
        .context("starting a writer")?;
    Ok(())
}

fn read_loop(
    from: &File,
    peer: Ipv4Addr,
    mut pacer: Pacer,
    queue: &SyncSender<(Instant, Vec<u8>)>,
    counters: &Counters,
) -> Result<()> {
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let n = (&*from).read(&mut buffer).context("reading the device")?;
        let packet = &buffer[..n];
        if !is_ipv4_to(packet, peer) {
            counters.ignored.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(release) = pacer.admit(Instant::now()) else {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match queue.try_send((release, packet.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => bail!("the writer stopped"),
        }
    }
}

/// Release times never decrease within a direction (the pacer keeps order), so the queue's
/// head is always the next packet due.
fn write_loop(
    direction: Direction,
    to: &File,
    queued: Receiver<(Instant, Vec<u8>)>,
    counters: &Counters,
) {
    let mut refused = 0u64;
    for (release, packet) in queued {
        let now = Instant::now();
        if release > now {
            std::thread::sleep(release - now);
        }
        // A TUN device takes a packet whole or not at all.
        match (&*to).write(&packet) {
            Ok(n) if n == packet.len() => {
                direction
                    .delivered(counters)
                    .fetch_add(1, Ordering::Relaxed);
            }
            outcome => {
                let error = outcome.map_or_else(|e| e.to_string(), |n| format!("took {n} bytes"));
                // A device going down refuses packets; the link then behaves as a lossy one.
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                refused += 1;
                if refused == 1 {
                    tracing::warn!(?direction, %error, "the peer device refused a packet");
                }
            }
        }
    }
}

/// An IPv4 packet addressed to `peer` (anything else a route would not have sent here).
fn is_ipv4_to(packet: &[u8], peer: Ipv4Addr) -> bool {
    packet.len() >= 20 && packet[0] >> 4 == 4 && packet[16..20] == peer.octets()
}

fn write_stdout(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
