#!/usr/bin/env bash
# Shared by the benchmark scripts (bench-register.sh, bench-calls.sh), sourced after they set
# BENCH_NAME (log prefix), WORK (their temporary directory), PIDS=() and READY_SECONDS:
# logging, the processes they start (each in its own process group: Kamailio forks workers)
# and their cleanup on exit, free ports, and readiness probes.

say() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }
die() { say "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

cleanup() {
    local status=$?
    stop_all
    [ -n "${WORK:-}" ] || return 0
    if [ "${KEEP_WORKDIR:-0}" = 1 ] || [ "$status" -ne 0 ]; then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
# Stops every process this script started (each in its own process group: Kamailio forks).
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
stop_one() {
    local pid="$1" rest=() p
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
    PIDS=("${rest[@]}")
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port [ip]: a port free for both UDP and TCP on ip (127.0.0.1).
free_port() {
    python3 - "${1:-127.0.0.1}" <<'EOF'
import socket, sys
ip = sys.argv[1]
while True:
    t = socket.socket(); t.bind((ip, 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind((ip, p)); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
print(p)
EOF
}

# sip_ping <port>: one OPTIONS over UDP, success on a 200 within 0.5 s.
sip_ping() {
    python3 - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); s.settimeout(0.5)
lp = s.getsockname()[1]
msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-ping-{lp};rport\r\n"
       "Max-Forwards: 70\r\n"
       f"From: <sip:ping@127.0.0.1>;tag=ping{lp}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
       f"Call-ID: ping-{lp}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
try:
    data, _ = s.recvfrom(4096)
except socket.timeout:
    sys.exit(1)
sys.exit(0 if data.startswith(b"SIP/2.0 200") else 1)
EOF
}

# wait_for <what> <pid> <command…>: polls every 0.1 s within READY_SECONDS; fails early if the
# process died.
wait_for() {
    local what="$1" pid="$2"
    shift 2
    for _ in $(seq $((READY_SECONDS * 10))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$what exited; log in $WORK"
        sleep 0.1
    done
    die "$what not ready after ${READY_SECONDS}s; log in $WORK"
}
