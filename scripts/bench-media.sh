#!/usr/bin/env bash
# `make bench-media`: the media relay, release build, one test at a time:
#   1. packets/s through a relay on one core, and its CPU per packet
#      (services/media/tests/throughput.rs);
#   2. the one-way latency it adds over direct loopback: an idle call (a ping-pong every
#      20 ms), back-to-back ping-pong, then 100 and 500 calls of 50 packets/s each way
#      (services/media/tests/latency.rs);
#   3. the latency test again under `chrt -f 10` (SCHED_FIFO) when FIFO allows it: the relay and
#      the phones then get a CPU as soon as they are runnable, whatever else the machine runs.
#      On a shared machine (other builds, CPU pressure printed with each run) pass 2's tails are
#      waits for a CPU; pass 3 tells them from the relay's own, as a relay with its own core
#      would see it.
# Prints each run's figures, then a summary: per scenario the added latency at p50/p90/p99/max
# (relay minus direct, µs), the relay's loss and the machine's CPU pressure during the relay run
# (share of time some task waited for a CPU), medians over the runs with their ranges.
#
# Environment: RUNS (1) repeats the passes; FIFO: auto (default: pass 3 when running as root),
# 1 (with sudo when not root), 0 (skip); MEDIA_BENCH_PACKETS, MEDIA_LATENCY_SESSIONS,
# MEDIA_LATENCY_SECONDS, MEDIA_LATENCY_ROUNDS go to the tests (see their headers).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BENCH_NAME=bench-media
WORK=""
PIDS=()
READY_SECONDS=0
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

RUNS="${RUNS:-1}"
FIFO="${FIFO:-auto}"
if [ "$FIFO" = auto ]; then
    if [ "$(id -u)" -eq 0 ] && command -v chrt >/dev/null; then FIFO=1; else FIFO=0; fi
fi
WORK="$(mktemp -d -t calanque-bench-media-XXXXXX)"

say "building (release)"
cargo test --locked -p media --release --test throughput --test latency --no-run
for i in $(seq "$RUNS"); do
    say "run $i of $RUNS: both tests, normal scheduling"
    cargo test --locked -p media --release --test throughput --test latency \
        -- --nocapture --test-threads=1 2>&1 | tee "$WORK/normal-$i.log"
    if [ "$FIFO" = 1 ]; then
        say "run $i of $RUNS: latency under chrt -f 10"
        as_root chrt -f 10 cargo test --locked -p media --release --test latency \
            -- --nocapture --test-threads=1 2>&1 | tee "$WORK/fifo-$i.log"
    fi
done

python3 - "$WORK" "$RUNS" <<'EOF'
import os, re, statistics, sys

work, runs = sys.argv[1], int(sys.argv[2])

def parse(path):
    """Figures of one log: throughput rows, and per latency scenario the added p50/p90/p99/max,
    the relay's loss, the relay thread's µs per packet and the CPU pressure of the relay run."""
    throughput, latency, scenario = {}, {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"\s+(1 session|\d+ sessions round-robin|direct loopback \(no relay\))"
                     r"\s+(\d+) pkt/s(?:.*relay CPU ([\d.]+) µs/pkt)?", line)
        if m:
            throughput[m.group(1)] = (float(m.group(2)),
                                      float(m.group(3)) if m.group(3) else None)
            continue
        m = re.match(r"  (\S.*)$", line)
        if m and not m.group(1).startswith("µs"):
            scenario = m.group(1).split(",")[0] if "calls ×" in m.group(1) else m.group(1)
            latency[scenario] = {}
            continue
        if scenario is None:
            continue
        row = latency[scenario]
        m = re.match(r"\s+relay\s+\d+(?:\s+[\d.]+){4}\s+([\d.]+)%", line)
        if m:
            row["loss"] = float(m.group(1))
        m = re.match(r"\s+added by the relay" + r"\s+([-+\d.]+)" * 4, line)
        if m:
            row["added"] = [float(x) for x in m.groups()]
        m = re.search(r"relay thread: .*?([\d.]+) µs per relayed packet", line)
        if m:
            row["cpu"] = float(m.group(1))
        m = re.search(r"(?:relay run|both paths): .*CPU pressure (\d+) %", line)
        if m:
            row["pressure"] = float(m.group(1))
    return throughput, latency

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def span(values, form):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f" [{form(min(values))}…{form(max(values))}]"

print(f"\nmedia relay summary: {runs} run(s), medians [ranges]")
throughput = {}
for i in range(1, runs + 1):
    for label, figures in parse(os.path.join(work, f"normal-{i}.log"))[0].items():
        throughput.setdefault(label, []).append(figures)
print("  packets/s through one core (tests/throughput.rs):")
for label, rows in throughput.items():
    pps = [r[0] for r in rows]
    cpu = [r[1] for r in rows]
    line = f"    {label:<30} {med(pps):>9,.0f} pkt/s{span(pps, lambda v: f'{v:,.0f}')}"
    if med(cpu) is not None:
        line += f", relay CPU {med(cpu):.1f} µs/pkt{span(cpu, lambda v: f'{v:.1f}')}"
    print(line)
for kind, title in (("normal", "normal scheduling"), ("fifo", "under chrt -f 10")):
    logs = [os.path.join(work, f"{kind}-{i}.log") for i in range(1, runs + 1)]
    logs = [log for log in logs if os.path.exists(log)]
    if not logs:
        continue
    scenarios = {}
    for log in logs:
        for scenario, row in parse(log)[1].items():
            scenarios.setdefault(scenario, []).append(row)
    print(f"  added one-way latency, relay minus direct, µs, {title} (tests/latency.rs):")
    print(f"    {'scenario':<40} {'p50':>14} {'p90':>16} {'p99':>18} {'max':>8}  "
          "loss  relay µs/pkt  CPU pressure")
    for scenario, rows in scenarios.items():
        added = list(zip(*[r["added"] for r in rows if "added" in r]))
        if not added:
            continue
        cells = [f"{med(c):+.0f}{span(c, lambda v: f'{v:+.0f}')}" for c in added[:3]]
        loss = med([r.get("loss") for r in rows])
        cpu = med([r.get("cpu") for r in rows])
        pressure = [r.get("pressure") for r in rows]
        print(f"    {scenario[:40]:<40} {cells[0]:>14} {cells[1]:>16} {cells[2]:>18} "
              f"{med(added[3]):>+8.0f}  {'—' if loss is None else f'{loss:.1f}%':>4}  "
              f"{'—' if cpu is None else f'{cpu:.1f}':>12}  "
              f"{'—' if med(pressure) is None else f'{med(pressure):.0f} %'}"
              f"{span(pressure, lambda v: f'{v:.0f}')}")
EOF
