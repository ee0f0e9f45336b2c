#!/usr/bin/env bash
# Directory benchmark (called by `make bench`): the reference city (300 sites, 12,000 users,
# 6,000 devices) imported through the CLI into calanque-directory on a real etcd and
# nats-server, then directory GETs by SIP username over the bus from another process.
#
# Prints the import's wall time and the peak RSS of the CLI (/usr/bin/time -v) and of the
# directory process (VmHWM), then the bus load test's latency percentiles, and a summary block.
#
# Environment: REQUESTS (default 20000), CONCURRENCY (32), SEED (1), KEEP_WORKDIR=1 to keep the
# temporary directory (logs) after the run.
set -euo pipefail

cd "$(dirname "$0")/.."
REQUESTS="${REQUESTS:-20000}"
CONCURRENCY="${CONCURRENCY:-32}"
SEED="${SEED:-1}"
# Bound on each component becoming ready.
READY_SECONDS=60

say() { printf '[bench-directory] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for program in etcd nats-server python3; do
    command -v "$program" >/dev/null || die "$program is not on PATH (run \`make deps\`)"
done
if [ ! -x /usr/bin/time ]; then
    say "installing Debian 'time' (for /usr/bin/time -v)"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y -qq time >/dev/null
    else
        sudo apt-get install -y -qq time >/dev/null
    fi
fi

say "building release binaries"
cargo build --release --locked -q -p calanque -p directory --bins
BIN="$(pwd)/target/release"
CLI="$BIN/calanque"
DIRECTORY="$BIN/calanque-directory"

WORK="$(mktemp -d -t calanque-bench-directory-XXXXXX)"
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_WORKDIR:-0}" = 1 ] || [ "$status" -ne 0 ]; then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for <what> <pid> <command…>: polls the command every 0.1 s until it succeeds, within
# READY_SECONDS; fails early if the process died.
wait_for() {
    local what="$1" pid="$2"
    shift 2
    local rounds=$((READY_SECONDS * 10))
    for _ in $(seq "$rounds"); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$what exited; log in $WORK"
        sleep 0.1
    done
    die "$what not ready after ${READY_SECONDS}s; log in $WORK"
}

ETCD_PORT="$(free_port)"
ETCD_PEER_PORT="$(free_port)"
NATS_PORT="$(free_port)"
REST_PORT="$(free_port)"
GRPC_PORT="$(free_port)"
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
NATS_URL="nats://127.0.0.1:$NATS_PORT"
DIRECTORY_URL="http://127.0.0.1:$REST_PORT"
TOKEN="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

say "starting etcd on $ETCD_URL"
# The flags the product requires for an atomic bulk import (ADR 0005).
etcd --name bench --data-dir "$WORK/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --max-txn-ops 50000 --max-request-bytes 33554432 \
    --logger zap --log-level warn >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
wait_for etcd "$ETCD_PID" sh -c "curl -fsS '$ETCD_URL/health' | grep -q '\"health\":\"true\"'"

say "starting nats-server on $NATS_URL"
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
wait_for nats-server "$NATS_PID" python3 -c "import socket; socket.create_connection(('127.0.0.1', $NATS_PORT), 1)"

say "starting calanque-directory on $DIRECTORY_URL"
CALANQUE_DIRECTORY_TOKEN="$TOKEN" RUST_LOG=warn "$DIRECTORY" \
    --store "etcd:$ETCD_URL" --bus "$NATS_URL" \
    --rest "127.0.0.1:$REST_PORT" --grpc "127.0.0.1:$GRPC_PORT" >"$WORK/directory.log" 2>&1 &
DIRECTORY_PID=$!
PIDS+=("$DIRECTORY_PID")
wait_for calanque-directory "$DIRECTORY_PID" curl -fsS "$DIRECTORY_URL/readyz"

export CALANQUE_DIRECTORY_URL="$DIRECTORY_URL" CALANQUE_TOKEN="$TOKEN"

say "generating the reference city (seed $SEED)"
"$CLI" dir generate-city --seed "$SEED" -o "$WORK/city.yaml" >&2
CITY_BYTES="$(stat -c %s "$WORK/city.yaml")"

vm_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
DIRECTORY_RSS_BEFORE="$(vm_kib "$DIRECTORY_PID" VmRSS)"

say "importing it through the CLI"
/usr/bin/time -v -o "$WORK/import.time" "$CLI" dir import "$WORK/city.yaml" >"$WORK/import.out"
cat "$WORK/import.out" >&2
IMPORT_WALL="$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$WORK/import.time")"
CLI_PEAK_KIB="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/import.time")"
DIRECTORY_HWM_KIB="$(vm_kib "$DIRECTORY_PID" VmHWM)"
DIRECTORY_RSS_AFTER="$(vm_kib "$DIRECTORY_PID" VmRSS)"
IMPORTED="$(cat "$WORK/import.out")"

say "re-importing (nothing changes)"
REIMPORT_START="$(date +%s.%N)"
"$CLI" dir import "$WORK/city.yaml" >"$WORK/reimport.out"
REIMPORT_SECONDS="$(python3 -c "print(f'{$(date +%s.%N) - $REIMPORT_START:.2f}')")"

say "bus load test: $REQUESTS GETs by SIP username, concurrency $CONCURRENCY"
"$CLI" dir loadtest --nats "$NATS_URL" --usernames-from "$WORK/city.yaml" \
    --requests "$REQUESTS" --concurrency "$CONCURRENCY" | tee "$WORK/loadtest.out" >&2
LOAD_SUMMARY="$(head -n 1 "$WORK/loadtest.out")"
LATENCY="$(grep '^latency' "$WORK/loadtest.out" || true)"
DIRECTORY_HWM_FINAL_KIB="$(vm_kib "$DIRECTORY_PID" VmHWM)"

cat <<EOF

== calanque directory benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)) ==
city                       seed $SEED, $CITY_BYTES bytes of YAML
import (CLI → REST → etcd) wall $IMPORT_WALL; $IMPORTED
re-import (no change)      ${REIMPORT_SECONDS} s; $(cat "$WORK/reimport.out")
CLI peak RSS               $((CLI_PEAK_KIB / 1024)) MiB
directory RSS              $((DIRECTORY_RSS_BEFORE / 1024)) MiB before import, $((DIRECTORY_RSS_AFTER / 1024)) MiB after; peak (VmHWM) $((DIRECTORY_HWM_KIB / 1024)) MiB at import, $((DIRECTORY_HWM_FINAL_KIB / 1024)) MiB after the load test
bus GET by SIP username    $LOAD_SUMMARY
                           $LATENCY
EOF
