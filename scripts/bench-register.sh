#!/usr/bin/env bash
# Registration benchmark: authenticated REGISTERs per second (REGISTER → 401 → REGISTER with
# MD5 credentials → 200, e2e/sipp/register_bench.xml) from SIPp on loopback against
#   1. Kamailio 5.6 (scripts/kamailio/registrar.cfg: db_text subscribers, in-memory usrloc),
#      with its default shared-memory allocator and with TLSF (-x tlsf);
#   2. calanque's SIP edge (target/release/calanque-sip-edge) on a real etcd, nats-server and
#      calanque-directory holding the same users as devices — when the edge binary exists.
# Prints registrations/s (successful calls / SIPp's elapsed time; the median when RUNS > 1),
# the ratio calanque/Kamailio, and the edge's memory per registered binding (RSS growth over a
# second wave of USERS new registrations, once the first wave's transactions have ended).
#
# Environment: USERS (10000), RATE (20000 calls/s asked of SIPp), LIMIT (100 calls in flight:
# more overflows loopback UDP buffers on small machines and the 500 ms retransmissions then
# dominate; the retransmission count is printed),
# RUNS (3), CHILDREN (8 Kamailio workers), ALLOCATORS ("default tlsf"), REALM (calanque.test),
# SIPP_TIMEOUT (120 s per run), CALANQUE=0 to measure Kamailio only, ALLOCATORS="" to measure
# calanque only,
# EDGE_EXTRA_ARGS (more flags for the edge; default "--trusted-network 127.0.0.0/8": one SIPp
# address sending thousands of requests a second is what the edge's flood protection bans, and
# this measures the registrar, not the ban),
# MEMORY=0 to skip the memory measurement (about 2 × SETTLE = 70 s),
# KEEP_WORKDIR=1 to keep the temporary directory (logs, SIPp traces).
# Exits non-zero only when a run fails; a missing edge binary is reported, not an error.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
USERS="${USERS:-10000}"
RATE="${RATE:-20000}"
LIMIT="${LIMIT:-100}"
RUNS="${RUNS:-3}"
CHILDREN="${CHILDREN:-8}"
ALLOCATORS="${ALLOCATORS-default tlsf}"
REALM="${REALM:-calanque.test}"
SIPP_TIMEOUT="${SIPP_TIMEOUT:-120}"
MEMORY="${MEMORY:-1}"
SETTLE="${SETTLE:-35}"
EDGE_EXTRA_ARGS="${EDGE_EXTRA_ARGS---trusted-network 127.0.0.0/8}"
READY_SECONDS=60
SCENARIO="$ROOT/e2e/sipp/register_bench.xml"
BIN="$ROOT/target/release"
EDGE="$BIN/calanque-sip-edge"


BENCH_NAME=bench-register
WORK=""
PIDS=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# --- prerequisites -------------------------------------------------------------------------
KAMAILIO="$(command -v kamailio || true)"
[ -n "$KAMAILIO" ] || { [ -x /usr/sbin/kamailio ] && KAMAILIO=/usr/sbin/kamailio; } || true
if [ -z "$KAMAILIO" ]; then
    say "installing kamailio with apt (the reference registrar)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq kamailio >/dev/null
    KAMAILIO=/usr/sbin/kamailio
fi
[ -x "$KAMAILIO" ] || die "kamailio not found after install"
for program in sipp python3 etcd nats-server curl; do
    command -v "$program" >/dev/null || die "$program is not on PATH (run \`make deps\`)"
done

WORK="$(mktemp -d -t calanque-bench-register-XXXXXX)"
PIDS=()

# Pinning: with 4 CPUs or more SIPp gets the last one and the server the others; with fewer
# both share every CPU (the figures then include SIPp's own cost).
NCPU="$(nproc)"
SIPP_PIN=()
SERVER_PIN=()
if [ "$NCPU" -ge 4 ] && command -v taskset >/dev/null; then
    SIPP_PIN=(taskset -c "$((NCPU - 1))")
    SERVER_PIN=(taskset -c "0-$((NCPU - 2))")
fi

# --- data: the same users for both sides ----------------------------------------------------
say "generating $USERS users (user<i> / pw<i> in $REALM)"
python3 - "$WORK" "$USERS" "$REALM" <<'EOF'
import hashlib, os, sys
work, n, realm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(f"{work}/db", exist_ok=True)
with open(f"{work}/db/version", "w") as f:
    f.write("id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n0:location:9\n")
with open(f"{work}/db/subscriber", "w") as sub, open(f"{work}/users.csv", "w") as csv, \
        open(f"{work}/users2.csv", "w") as csv2, open(f"{work}/devices.yaml", "w") as yaml:
    sub.write("id(int,auto) username(string) domain(string) password(string) "
              "ha1(string,null) ha1b(string,null) \n")
    csv.write("SEQUENTIAL\n")
    csv2.write("SEQUENTIAL\n")
    yaml.write("sites:\n  - id: S-BENCH\n    name: Registration bench\n"
               "    number_ranges: [9900000-9900099]\n    emergency_routes: []\n    media_policy: direct\n"
               "devices:\n")
    # Users n+1..2n are the second wave of the edge's memory measurement (devices only).
    for i in range(1, 2 * n + 1):
        user, pw = f"user{i}", f"pw{i}"
        line = (f"{user};{realm};{pw};[authentication username={user} password={pw}];"
                f"[authentication username={user} password=wrong-{pw}]\n")
        if i <= n:
            sub.write(f"{i}:{user}:{realm}:{pw}::\n")
            csv.write(line)
        else:
            csv2.write(line)
        a1 = f"{user}:{realm}:{pw}".encode()
        yaml.write(f"  - id: D-{i:06d}\n    sip_username: {user}\n    site_id: S-BENCH\n"
                   f"    realm: {realm}\n    ha1_md5: {hashlib.md5(a1).hexdigest()}\n"
                   f"    ha1_sha256: {hashlib.sha256(a1).hexdigest()}\n")
EOF

# run_sipp <label> <port> [csv]: the benchmark run (SIPp's receive buffer raised to 4 MiB for
# both servers: with its 64 KiB default, bursts of answers overflowed SIPp's own socket and its
# 500 ms retransmissions, not the server, set the pace); sets RESULT to "<successful> <failed> <seconds>
# <rate> <retransmissions>" (not printed: a command substitution's subshell would not stop what it started).
run_sipp() {
    local label="$1" port="$2" csv="${3:-$WORK/users.csv}" dir="$WORK/sipp-$1"
    mkdir -p "$dir"
    local status=0
    (cd "$dir" && timeout $((SIPP_TIMEOUT + 30)) "${SIPP_PIN[@]}" sipp "127.0.0.1:$port" \
        -sf "$SCENARIO" -inf "$csv" -i 127.0.0.1 -p "$(free_port)" -t u1 \
        -auth_uri "$REALM" -m "$USERS" -r "$RATE" -rp 1000 -l "$LIMIT" \
        -buff_size 4194304 -timeout "${SIPP_TIMEOUT}s" -nostdin -trace_stat -stf "$dir/stat.csv" \
        -trace_err -error_file "$dir/errors.log" >"$dir/stdout.log" 2>&1) || status=$?
    if [ "$status" -gt 1 ] || [ ! -s "$dir/stat.csv" ]; then
        tail -n 20 "$dir/errors.log" "$dir/stdout.log" >&2 2>/dev/null || true
        die "sipp against $label exited with $status; traces in $dir"
    fi
    RESULT="$(python3 - "$dir/stat.csv" <<'EOF'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
epoch = lambda name: float(col(name).split()[-1])
ok, failed = int(col("SuccessfulCall(C)")), int(col("FailedCall(C)"))
secs = epoch("CurrentTime") - epoch("StartTime")
print(ok, failed, f"{secs:.3f}", f"{ok / secs:.0f}" if secs > 0 else "0",
      col("Retransmissions(C)"))
EOF
)"
}

median() { python3 -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.0f}")' "$@"; }

# --- Kamailio -------------------------------------------------------------------------------
# kamailio_run <allocator> <run>: starts a fresh Kamailio, runs SIPp once (RESULT), stops it.
kamailio_run() {
    local allocator="$1" port
    port="$(free_port)"
    local alloc_args=()
    [ "$allocator" = default ] || alloc_args=(-x "$allocator")
    mkdir -p "$WORK/kamailio"
    cp scripts/kamailio/registrar.cfg "$WORK/kamailio/registrar.cfg"
    setsid "${SERVER_PIN[@]}" "$KAMAILIO" -f "$WORK/kamailio/registrar.cfg" \
        -A "DBURL=\"text://$WORK/db\"" -A "REALM=\"$REALM\"" -A MINEXP=60 -A MAXEXP=3600 \
        -l "udp:127.0.0.1:$port" -l "tcp:127.0.0.1:$port" -n "$CHILDREN" -m 256 -M 16 \
        "${alloc_args[@]}" -w "$WORK/kamailio" -Y "$WORK/kamailio" -DD -E \
        >"$WORK/kamailio/kamailio-$allocator.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_for "kamailio ($allocator)" "$pid" sip_ping "$port"
    run_sipp "kamailio-$allocator-$2" "$port"
    stop_one "$pid"
}

declare -A KAM_RATE
KAM_SUMMARY=""
for allocator in $ALLOCATORS; do
    rates=()
    for run in $(seq "$RUNS"); do
        say "kamailio ($allocator allocator, $CHILDREN children), run $run/$RUNS: $USERS registrations at up to $RATE/s"
        kamailio_run "$allocator" "$run"
        read -r ok failed secs rate retrans <<<"$RESULT"
        say "  $ok successful, $failed failed in ${secs}s: $rate registrations/s ($retrans retransmissions)"
        [ "$failed" -eq 0 ] || die "$failed registrations failed against kamailio ($allocator)"
        rates+=("$rate")
    done
    KAM_RATE[$allocator]="$(median "${rates[@]}")"
    KAM_SUMMARY+="$(printf '%-27s %s registrations/s (median of %s)' "kamailio ($allocator)" "${KAM_RATE[$allocator]}" "$RUNS")"$'\n'
done
# Printed now too, so that the Kamailio figures survive a failure on the calanque side.
printf '%s' "$KAM_SUMMARY" >&2

# --- calanque -------------------------------------------------------------------------------
vm_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
CALANQUE_SUMMARY=""

calanque_side() {
    say "building release binaries (calanque, calanque-directory, calanque-sip-edge)"
    cargo build --release --locked -q -p calanque -p directory --bins \
        || die "building calanque / calanque-directory failed"
    cargo build --release --locked -q -p sip-edge --bins 2>"$WORK/edge-build.log" \
        || say "calanque-sip-edge does not build yet (see $WORK/edge-build.log)"
    if [ ! -x "$EDGE" ]; then
        say "$EDGE does not exist yet: calanque side skipped"
        CALANQUE_SUMMARY="calanque sip-edge            not measured: $EDGE does not exist yet"$'\n'
        return 0
    fi

    local etcd_port etcd_peer nats_port rest_port grpc_port token
    etcd_port="$(free_port)"; etcd_peer="$(free_port)"; nats_port="$(free_port)"
    rest_port="$(free_port)"; grpc_port="$(free_port)"
    local etcd_url="http://127.0.0.1:$etcd_port" nats_url="nats://127.0.0.1:$nats_port"
    token="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

    say "starting etcd on $etcd_url"
    etcd --name bench --data-dir "$WORK/etcd" \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "bench=http://127.0.0.1:$etcd_peer" --initial-cluster-state new \
        --max-txn-ops 50000 --max-request-bytes 33554432 \
        --logger zap --log-level warn >"$WORK/etcd.log" 2>&1 &
    PIDS+=($!)
    wait_for etcd "$!" sh -c "curl -fsS '$etcd_url/health' | grep -q '\"health\":\"true\"'"

    say "starting nats-server on $nats_url"
    nats-server -a 127.0.0.1 -p "$nats_port" >"$WORK/nats.log" 2>&1 &
    PIDS+=($!)
    wait_for nats-server "$!" python3 -c "import socket; socket.create_connection(('127.0.0.1', $nats_port), 1)"

    say "starting calanque-directory and importing $USERS devices"
    CALANQUE_DIRECTORY_TOKEN="$token" RUST_LOG=warn "$BIN/calanque-directory" \
        --store "etcd:$etcd_url" --bus "$nats_url" \
        --rest "127.0.0.1:$rest_port" --grpc "127.0.0.1:$grpc_port" >"$WORK/directory.log" 2>&1 &
    PIDS+=($!)
    wait_for calanque-directory "$!" curl -fsS "http://127.0.0.1:$rest_port/readyz"
    CALANQUE_DIRECTORY_URL="http://127.0.0.1:$rest_port" CALANQUE_TOKEN="$token" \
        timeout 300 "$BIN/calanque" dir import "$WORK/devices.yaml" >&2 \
        || die "importing the devices failed"

    start_edge() { # start_edge <label>: sets EDGE_PID and EDGE_PORT
        EDGE_PORT="$(free_port)"
        say "starting calanque-sip-edge on udp+tcp 127.0.0.1:$EDGE_PORT"
        # shellcheck disable=SC2086 # EDGE_EXTRA_ARGS is a list of flags.
        RUST_LOG=warn setsid "${SERVER_PIN[@]}" "$EDGE" --edge-id bench-1 \
            --listen "udp:127.0.0.1:$EDGE_PORT" --listen "tcp:127.0.0.1:$EDGE_PORT" \
            --etcd "$etcd_url" --nats "$nats_url" --realm "$REALM" --digest-algorithms MD5 \
            $EDGE_EXTRA_ARGS >"$WORK/edge-$1.log" 2>&1 &
        EDGE_PID=$!
        PIDS+=("$EDGE_PID")
        wait_for calanque-sip-edge "$EDGE_PID" sip_ping "$EDGE_PORT"
    }

    local rates=() run ok failed secs rate retrans
    for run in $(seq "$RUNS"); do
        start_edge "$run"
        say "calanque-sip-edge, run $run/$RUNS: $USERS registrations at up to $RATE/s"
        run_sipp "calanque-$run" "$EDGE_PORT"
        read -r ok failed secs rate retrans <<<"$RESULT"
        say "  $ok successful, $failed failed in ${secs}s: $rate registrations/s ($retrans retransmissions)"
        [ "$failed" -eq 0 ] || die "$failed registrations failed against calanque-sip-edge"
        rates+=("$rate")
        stop_one "$EDGE_PID"
    done
    local median_rate
    median_rate="$(median "${rates[@]}")"
    CALANQUE_SUMMARY+="$(printf '%-27s %s registrations/s (median of %s)' "calanque sip-edge" "$median_rate" "$RUNS")"$'\n'
    for allocator in $ALLOCATORS; do
        CALANQUE_SUMMARY+="$(printf '%-27s %s' "ratio vs kamailio ($allocator)" \
            "$(python3 -c "print(f'{$median_rate / max(${KAM_RATE[$allocator]}, 1):.2f}')")")"$'\n'
    done

    # Memory per binding. A fresh edge loads the USERS bindings the runs left in etcd (its
    # cache), then: wave 1 re-registers them (transactions, nonces: the allocator grows to its
    # working size), wave 2 registers USERS new users. After each wave the edge idles until its
    # transactions have ended (Timer J, 32 s). The marginal cost of a binding is the growth over
    # wave 2; the gross figure (everything since start, per binding) is printed too.
    if [ "$MEMORY" = 1 ]; then
        local rss_start rss_wave1 rss_wave2
        start_edge memory
        rss_start="$(vm_kib "$EDGE_PID" VmRSS)"
        say "memory: wave 1 (refresh of $USERS bindings), then ${SETTLE}s idle"
        run_sipp calanque-memory-1 "$EDGE_PORT"
        sleep "$SETTLE"
        rss_wave1="$(vm_kib "$EDGE_PID" VmRSS)"
        say "memory: wave 2 ($USERS new bindings), then ${SETTLE}s idle"
        run_sipp calanque-memory-2 "$EDGE_PORT" "$WORK/users2.csv"
        read -r ok failed secs rate retrans <<<"$RESULT"
        [ "$failed" -eq 0 ] || die "$failed registrations failed in memory wave 2"
        sleep "$SETTLE"
        rss_wave2="$(vm_kib "$EDGE_PID" VmRSS)"
        stop_one "$EDGE_PID"
        CALANQUE_SUMMARY+="$(printf '%-27s %s MiB with %s bindings loaded, %s MiB after refreshing them, %s MiB after %s more' \
            "calanque sip-edge RSS" "$((rss_start / 1024))" "$USERS" "$((rss_wave1 / 1024))" \
            "$((rss_wave2 / 1024))" "$ok")"$'\n'
        CALANQUE_SUMMARY+="$(printf '%-27s %s bytes per binding (wave 2 growth / %s)' "memory per binding" \
            "$(python3 -c "print(round(($rss_wave2 - $rss_wave1) * 1024 / max($ok, 1)))")" "$ok")"$'\n'
    fi
}

if [ "${CALANQUE:-1}" = 0 ]; then
    CALANQUE_SUMMARY="calanque sip-edge            not measured (CALANQUE=0)"$'\n'
else
    calanque_side
fi

cat <<EOF

== registration benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $NCPU CPUs, $(uname -r)) ==
scenario                    $USERS users, REGISTER → 401 → REGISTER (MD5) → 200, UDP, SIPp -r $RATE -l $LIMIT
pinning                     ${SIPP_PIN[*]:-none (fewer than 4 CPUs)}
$KAM_SUMMARY$CALANQUE_SUMMARY
EOF
