#!/usr/bin/env bash
# Call-setup benchmark: calls per second, INVITE → 407 → ACK → INVITE (MD5 credentials) → 180 →
# 200 → ACK → BYE → 200, no media (e2e/sipp/call_uac.xml against e2e/sipp/call_uas.xml), from
# SIPp on loopback through
#   1. Kamailio 5.6 as a stateful record-routing proxy with registrar and proxy authentication
#      (scripts/kamailio/proxy.cfg), with its default shared-memory allocator and with TLSF;
#   2. calanque all-in-one (`calanque run`: edge, call-control and directory in one process on
#      the embedded store, its demo directory: 1001 calls 1002);
#   3. calanque in cluster mode (calanque-sip-edge, calanque-call-control, calanque-directory
#      as separate processes on a real etcd and nats-server, the same directory), when
#      CLUSTER=1 (default) and the binaries build;
#   4. the same cluster exporting every span over OTLP/HTTP to a sink (scripts/otlp-sink.py)
#      when OTLP=1 (default): the cost of tracing export. For both cluster runs the CPU the
#      edge and call-control processes spend per call is also measured at one fixed rate
#      (CPU_RATE calls/s, default 800, for CPU_SECONDS, default 10): ratios of rates are
#      coarse (the ladder's steps), CPU per call is not.
# The callee (SIPp UAS) first registers its address (a small UDP client bound to the port SIPp
# then listens on). For each server a ladder of rates is tried, each for STEP_SECONDS seconds
# (-m rate × STEP_SECONDS); a rate passes when fewer than 0.1 % of its calls fail (failed = asked −
# successful: errors, timeouts and calls never completed all count) and SIPp achieved at least
# 90 % of it. The ladder stops at the first rate that does not pass. Prints per server the best
# passing rate (the achieved calls/s at that step) and the ratio calanque/Kamailio.
#
# Environment: LADDER ("10 20 50 200 500 1000 1500 1750 2000 2500 3000" calls/s), STEP_SECONDS (5),
# LIMIT (calls in flight; default: the rate, i.e. one second's worth), CHILDREN (8 Kamailio
# workers), ALLOCATORS ("default tlsf"; "" skips Kamailio), ALLINONE=0 / CLUSTER=0 to skip a
# calanque mode, BUILD=0 to use the binaries in target/release as they are,
# TRUSTED (auto): how `calanque run` meets one caller sending thousands of requests a second.
#   - "trusted" variant (TRUSTED=auto|1, when `calanque run` has --trusted-network): 127.0.0.0/8
#     trusted. The edge then skips the INVITE challenge altogether (no 407 round trip: not the
#     same work as Kamailio's). As of this writing the edge then hands call-control an INVITE
#     with no device, which it answers 403 "barred: device  is not in the directory".
#   - "untrusted" variant (always): the caller on 127.0.0.2, challenged; the callee's address
#     (127.0.0.1) trusted when the flag exists; --rate-limit/--rate-burst raised when
#     `calanque run` has them, otherwise the edge's default per-source limit (100 requests/s,
#     burst 200; a call is 5 requests from the caller) bans the caller. --digest-algorithms MD5
#     when `calanque run` has it (SIPp answers only MD5 challenges).
# The cluster edge is never trusted: it gets --rate-limit/--rate-burst high enough and
# --digest-algorithms MD5, so its INVITEs are challenged like Kamailio's.
# SIPP_TRACE=1 makes SIPp log every message (slow: for debugging at low rates),
# KEEP_WORKDIR=1 keeps the temporary directory (logs, SIPp traces).
# Everything is bounded in time (SIPp -timeout, `timeout`); every process started here is
# stopped on exit. Exits non-zero only when the benchmark itself cannot run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
LADDER="${LADDER:-10 20 50 200 500 1000 1500 1750 2000 2500 3000}"
SECONDS_PER_STEP="${STEP_SECONDS:-5}"
CHILDREN="${CHILDREN:-8}"
ALLOCATORS="${ALLOCATORS-default tlsf}"
DOMAIN=calanque
TRUSTED="${TRUSTED:-auto}"
READY_SECONDS=60
UAC="$ROOT/e2e/sipp/call_uac.xml"
UAS="$ROOT/e2e/sipp/call_uas.xml"
BIN="$ROOT/target/release"
CALLER=1001
CALLEE=1002


BENCH_NAME=bench-calls
WORK=""
PIDS=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# --- prerequisites -------------------------------------------------------------------------
KAMAILIO="$(command -v kamailio || true)"
[ -n "$KAMAILIO" ] || { [ -x /usr/sbin/kamailio ] && KAMAILIO=/usr/sbin/kamailio; } || true
if [ -z "$KAMAILIO" ] && [ -n "$ALLOCATORS" ]; then
    say "installing kamailio with apt (the reference proxy)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq kamailio >/dev/null
    KAMAILIO=/usr/sbin/kamailio
fi
for program in sipp python3 curl; do
    command -v "$program" >/dev/null || die "$program is not on PATH (run \`make deps\`)"
done

WORK="$(mktemp -d -t calanque-bench-calls-XXXXXX)"
PIDS=()

# sip_register <server port> <local port> <user> <password>: REGISTERs sip:<user>@DOMAIN with
# Contact 127.0.0.1:<local port>, sent from that port (the one SIPp's UAS listens on next),
# answering a 401 with an MD5 digest (qop=auth when offered). Exits 0 on a 200.
sip_register() {
    python3 - "$1" "$2" "$3" "$4" "$DOMAIN" <<'EOF'
import hashlib, re, secrets, socket, sys
port, local, user, password, domain = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", local)); s.settimeout(2)
call_id = f"reg-{secrets.token_hex(8)}@127.0.0.1"
md5 = lambda text: hashlib.md5(text.encode()).hexdigest()
auth = ""
for cseq in (1, 2, 3):
    msg = (f"REGISTER sip:{domain} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{secrets.token_hex(8)};rport\r\n"
           "Max-Forwards: 70\r\n"
           f"From: <sip:{user}@{domain}>;tag={secrets.token_hex(4)}\r\nTo: <sip:{user}@{domain}>\r\n"
           f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
           f"Contact: <sip:{user}@127.0.0.1:{local};transport=udp>\r\n{auth}"
           "Expires: 3600\r\nUser-Agent: calanque-bench\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), ("127.0.0.1", port))
    while True:
        data = s.recv(65535).decode(errors="replace")
        status = int(data.split(" ", 2)[1])
        if status >= 200:
            break
    if 200 <= status < 300:
        sys.exit(0)
    if status != 401:
        sys.exit(f"REGISTER answered {data.splitlines()[0]}")
    header = next(l for l in data.split("\r\n") if l.lower().startswith("www-authenticate:"))
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.split(":", 1)[1]))
    uri = f"sip:{domain}"
    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"REGISTER:{uri}")
    extra = ""
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        extra = f",qop=auth,nc={nc},cnonce=\"{cnonce}\""
    else:
        response = md5(f"{ha1}:{params['nonce']}:{ha2}")
    opaque = f",opaque=\"{params['opaque']}\"" if "opaque" in params else ""
    auth = (f"Authorization: Digest username=\"{user}\",realm=\"{params['realm']}\","
            f"nonce=\"{params['nonce']}\",uri=\"{uri}\",response=\"{response}\","
            f"algorithm=MD5{extra}{opaque}\r\n")
sys.exit("REGISTER not accepted after two challenges")
EOF
}

# --- SIPp -------------------------------------------------------------------------------------
TRACE=()
[ "${SIPP_TRACE:-0}" = 1 ] && TRACE=(-trace_msg)
# start_uas <label> <server port> <password>: registers CALLEE at a fresh port, then starts
# SIPp's UAS on it (UAS_PID). Calls it never completes end after 10 s (-recv_timeout).
start_uas() {
    local label="$1" server="$2" password="$3" port dir="$WORK/uas-$1"
    mkdir -p "$dir"
    port="$(free_port)"
    sip_register "$server" "$port" "$CALLEE" "$password" \
        || die "$CALLEE could not register its address at $label"
    (cd "$dir" && exec setsid sipp -sf "$UAS" -i 127.0.0.1 -p "$port" -mp "$(free_port)" -t u1 \
        -buff_size 4194304 -recv_timeout 10000 -nostdin -trace_err -error_file "$dir/errors.log" \
        "${TRACE[@]}" >"$dir/stdout.log" 2>&1) &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    sleep 0.5
    kill -0 "$UAS_PID" 2>/dev/null || { tail -n 20 "$dir/stdout.log" >&2; die "SIPp UAS for $label exited"; }
}

# The caller ignores unexpected messages instead of aborting (-default_behaviors
# all,-abortunexp): Kamailio's workers relay a 180 and the 200 right behind it in either order,
# and a late 180 is no failure for a phone. A real failure still fails the call (no 200 within
# -recv_timeout).
# run_uac <label> <server port> <rate> <csv> <caller ip>: one step of the ladder; sets RESULT
# to "<asked> <successful> <failed> <seconds> <achieved rate> <retransmissions> <failed %>".
run_uac() {
    local label="$1" port="$2" rate="$3" csv="$4" ip="$5" dir="$WORK/uac-$1-$3"
    local calls=$((rate * SECONDS_PER_STEP)) limit="${LIMIT:-$3}" status=0
    [ "$limit" -ge 50 ] || limit=50
    mkdir -p "$dir"
    (cd "$dir" && timeout $((SECONDS_PER_STEP + 60)) sipp "127.0.0.1:$port" -sf "$UAC" \
        -inf "$csv" -s "$CALLEE" -auth_uri "$CALLEE@$DOMAIN" -i "$ip" -p "$(free_port "$ip")" \
        -mp "$(free_port "$ip")" -t u1 -m "$calls" -r "$rate" -rp 1000 -l "$limit" \
        -default_behaviors all,-abortunexp -buff_size 4194304 -recv_timeout 5000 -timeout "$((SECONDS_PER_STEP + 30))s" -nostdin \
        -trace_stat -stf "$dir/stat.csv" -trace_err -error_file "$dir/errors.log" "${TRACE[@]}" \
        >"$dir/stdout.log" 2>&1) || status=$?
    if [ ! -s "$dir/stat.csv" ]; then
        tail -n 20 "$dir/errors.log" "$dir/stdout.log" >&2 2>/dev/null || true
        die "sipp against $label exited with $status and no statistics; traces in $dir"
    fi
    RESULT="$(python3 - "$dir/stat.csv" "$calls" <<'EOF'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
asked = int(sys.argv[2])
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
epoch = lambda name: float(col(name).split()[-1])
ok = int(col("SuccessfulCall(C)"))
secs = epoch("CurrentTime") - epoch("StartTime")
failed = asked - ok
print(asked, ok, failed, f"{secs:.2f}", f"{ok / secs:.0f}" if secs > 0 else "0",
      col("Retransmissions(C)"), f"{100 * failed / asked:.3f}")
EOF
)"
}

# ladder <label> <server port> <csv> <caller ip>: climbs LADDER while steps pass; sets BEST
# ("<achieved calls/s> <asked> <failed %>", or "0 - -") and appends the steps to STEPS_LOG.
ladder() {
    local label="$1" port="$2" csv="$3" ip="$4" rate asked ok failed secs achieved retrans pct
    BEST="0 - -"
    for rate in $LADDER; do
        run_uac "$label" "$port" "$rate" "$csv" "$ip"
        read -r asked ok failed secs achieved retrans pct <<<"$RESULT"
        local verdict=pass
        if [ $((failed * 1000)) -ge "$asked" ]; then
            verdict="FAIL (≥ 0.1 % failed)"
        elif [ $((achieved * 10)) -lt $((rate * 9)) ]; then
            verdict="FAIL (< 90 % of the rate)"
        fi
        local line
        line="$(printf '%-34s %5s calls/s asked: %6s/%6s ok, %5s%% failed, %6ss, %5s calls/s, %s retransmissions: %s' \
            "$label" "$rate" "$ok" "$asked" "$pct" "$secs" "$achieved" "$retrans" "$verdict")"
        say "$line"
        STEPS_LOG+="$line"$'\n'
        [ "$verdict" = pass ] || break
        BEST="$achieved $rate $pct"
        sleep 1
    done
}
STEPS_LOG=""
SUMMARY=""
declare -A RATE_OF

# summarize <label> <key>: records BEST for the summary.
summarize() {
    local achieved asked pct
    read -r achieved asked pct <<<"$BEST"
    RATE_OF[$2]="$achieved"
    if [ "$achieved" = 0 ]; then
        SUMMARY+="$(printf '%-42s no step passed (lowest asked: %s calls/s)' "$1" "${LADDER%% *}")"$'\n'
    else
        SUMMARY+="$(printf '%-42s %5s calls/s (step %s calls/s, %s%% failed)' "$1" "$achieved" "$asked" "$pct")"$'\n'
    fi
}

# caller_csv <file> <user> <password>
caller_csv() {
    printf 'SEQUENTIAL\n%s;%s;%s;[authentication username=%s password=%s]\n' \
        "$2" "$DOMAIN" "$3" "$2" "$3" >"$1"
}

# --- Kamailio -------------------------------------------------------------------------------
KAM_PASSWORD1=kam-pw-1001
KAM_PASSWORD2=kam-pw-1002
kamailio_side() {
    local allocator="$1" port alloc_args=()
    [ "$allocator" = default ] || alloc_args=(-x "$allocator")
    mkdir -p "$WORK/kamailio/db"
    printf 'id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n0:location:9\n' \
        >"$WORK/kamailio/db/version"
    printf 'id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null) \n1:%s:%s:%s::\n2:%s:%s:%s::\n' \
        "$CALLER" "$DOMAIN" "$KAM_PASSWORD1" "$CALLEE" "$DOMAIN" "$KAM_PASSWORD2" \
        >"$WORK/kamailio/db/subscriber"
    caller_csv "$WORK/kamailio/caller.csv" "$CALLER" "$KAM_PASSWORD1"
    port="$(free_port)"
    setsid "$KAMAILIO" -f "$ROOT/scripts/kamailio/proxy.cfg" \
        -A "DBURL=\"text://$WORK/kamailio/db\"" -A "REALM=\"$DOMAIN\"" \
        -l "udp:127.0.0.1:$port" -n "$CHILDREN" -m 256 -M 16 \
        "${alloc_args[@]}" -w "$WORK/kamailio" -Y "$WORK/kamailio" -DD -E \
        >"$WORK/kamailio/kamailio-$allocator.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_for "kamailio ($allocator)" "$pid" sip_ping "$port"
    start_uas "kamailio-$allocator" "$port" "$KAM_PASSWORD2"
    ladder "kamailio-$allocator" "$port" "$WORK/kamailio/caller.csv" 127.0.0.1
    stop_one "$UAS_PID"
    stop_one "$pid"
    summarize "kamailio ($allocator, $CHILDREN children)" "kamailio-$allocator"
}

for allocator in $ALLOCATORS; do
    [ -x "$KAMAILIO" ] || die "kamailio not found"
    say "kamailio, $allocator allocator: ladder $LADDER calls/s, ${SECONDS_PER_STEP}s each"
    kamailio_side "$allocator"
done
printf '%s' "$SUMMARY" >&2

# --- calanque -------------------------------------------------------------------------------
if [ "${BUILD:-1}" = 1 ] && { [ "${ALLINONE:-1}" = 1 ] || [ "${CLUSTER:-1}" = 1 ]; }; then
    say "building release binaries (calanque, calanque-directory, calanque-sip-edge, calanque-call-control)"
    timeout 1800 cargo build --release --locked -q -p calanque -p directory -p sip-edge \
        -p call-control --bins 2>"$WORK/build.log" \
        || say "the release build failed (see $WORK/build.log): using the binaries in $BIN as they are"
fi

# password_of <credentials file> <extension>
password_of() { awk -v ext="$2" '$1 == ext { print $3 }' "$1"; }

DEMO_YAML="$WORK/demo.yaml"
allinone_side() {
    if ! "$BIN/calanque" run --help >/dev/null 2>&1; then
        SUMMARY+="calanque all-in-one                        not measured: $BIN/calanque has no 'run'"$'\n'
        return 0
    fi
    local variants=(untrusted)
    if "$BIN/calanque" run --help 2>&1 | grep -q -- --trusted-network; then
        case "$TRUSTED" in
        auto | 1) variants=(trusted untrusted) ;;
        esac
    else
        say "calanque run has no --trusted-network: only the untrusted variant (caller on 127.0.0.2, flood-banned at high rates)"
    fi
    # Flags `calanque run` may have (the edge binary has them): SIPp answers only MD5
    # challenges, and the caller's rate must not be taken for a flood.
    local help common=() unlimited=()
    help="$("$BIN/calanque" run --help 2>&1)"
    grep -q -- --digest-algorithms <<<"$help" && common+=(--digest-algorithms MD5)
    grep -q -- --rate-limit <<<"$help" && unlimited=(--rate-limit 10000000)
    grep -q -- --rate-burst <<<"$help" && unlimited+=(--rate-burst 10000000)
    local variant
    for variant in "${variants[@]}"; do
        local data="$WORK/allinone-$variant" port rest extra=() caller_ip
        port="$(free_port)"; rest="$(free_port)"
        if [ "$variant" = trusted ]; then
            extra=(--trusted-network 127.0.0.0/8); caller_ip=127.0.0.1
        else
            caller_ip=127.0.0.2
            # The callee's answers come from 127.0.0.1: exempt it when the flag exists, so
            # that only the caller meets the per-source rate limit.
            grep -q -- --trusted-network <<<"$help" && extra=(--trusted-network 127.0.0.1/32)
            extra+=("${unlimited[@]}")
        fi
        extra+=("${common[@]}")
        say "calanque all-in-one ($variant${extra[*]:+, ${extra[*]}}) on udp 127.0.0.1:$port"
        RUST_LOG=warn setsid "$BIN/calanque" run --data-dir "$data" --listen "udp:127.0.0.1:$port" \
            --rest "127.0.0.1:$rest" "${extra[@]}" >"$WORK/allinone-$variant.log" 2>&1 &
        local pid=$!
        PIDS+=("$pid")
        wait_for "calanque run" "$pid" sip_ping "$port"
        wait_for "calanque run's credentials" "$pid" test -s "$data/demo-credentials.txt"
        local pw1 pw2
        pw1="$(password_of "$data/demo-credentials.txt" "$CALLER")"
        pw2="$(password_of "$data/demo-credentials.txt" "$CALLEE")"
        [ -n "$pw1" ] && [ -n "$pw2" ] || die "no password for $CALLER/$CALLEE in $data/demo-credentials.txt"
        if [ ! -s "$DEMO_YAML" ]; then
            # The same directory for the cluster mode (with these passwords).
            CALANQUE_DIRECTORY_URL="http://127.0.0.1:$rest" CALANQUE_TOKEN="$(cat "$data/admin-token")" \
                timeout 60 "$BIN/calanque" dir export >"$DEMO_YAML" 2>"$WORK/export.log" || rm -f "$DEMO_YAML"
            cp "$data/demo-credentials.txt" "$WORK/demo-credentials.txt" 2>/dev/null || true
        fi
        caller_csv "$WORK/allinone-$variant.csv" "$CALLER" "$pw1"
        start_uas "allinone-$variant" "$port" "$pw2"
        ladder "calanque-allinone-$variant" "$port" "$WORK/allinone-$variant.csv" "$caller_ip"
        stop_one "$UAS_PID"
        stop_one "$pid"
        if [ "$variant" = trusted ]; then
            summarize "calanque all-in-one (trusted: no 407)" allinone-trusted
        else
            summarize "calanque all-in-one (caller untrusted)" allinone-untrusted
        fi
    done
}

# export_demo: a short-lived `calanque run` creates the demo directory; exported to DEMO_YAML
# with its passwords in WORK/demo-credentials.txt.
export_demo() {
    "$BIN/calanque" run --help >/dev/null 2>&1 || return 0
    local data="$WORK/export-run" port rest
    port="$(free_port)"; rest="$(free_port)"
    RUST_LOG=warn setsid "$BIN/calanque" run --data-dir "$data" --listen "udp:127.0.0.1:$port" \
        --rest "127.0.0.1:$rest" >"$WORK/export-run.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_for "calanque run" "$pid" sip_ping "$port"
    wait_for "calanque run's credentials" "$pid" test -s "$data/demo-credentials.txt"
    CALANQUE_DIRECTORY_URL="http://127.0.0.1:$rest" CALANQUE_TOKEN="$(cat "$data/admin-token")" \
        timeout 60 "$BIN/calanque" dir export >"$DEMO_YAML" 2>"$WORK/export.log" || rm -f "$DEMO_YAML"
    cp "$data/demo-credentials.txt" "$WORK/demo-credentials.txt"
    stop_one "$pid"
}

# process_cpu_ticks <pid…>: utime + stime of the processes, in clock ticks.
process_cpu_ticks() {
    local pid total=0 fields
    for pid in "$@"; do
        read -r -a fields <"/proc/$pid/stat"
        # Fields 14 and 15 (utime, stime); the command name (field 2) has no spaces here.
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

# cluster_side [otlp RATIO]: the cluster; with "otlp", edge and call-control export the spans
# of RATIO of the calls (the edge samples, the others follow).
cluster_side() {
    local mode="${1:-}" ratio="${2:-1}" key=cluster label="calanque cluster (edge + call-control + dir)"
    local otlp_args=()
    if [ "$mode" = otlp ]; then
        key="cluster-otlp-$ratio"
        label="calanque cluster, spans exported ($ratio)"
        local sink_port
        sink_port="$(free_port)"
        setsid python3 "$ROOT/scripts/otlp-sink.py" "$sink_port" "$WORK/otlp-sink.stats" \
            >"$WORK/otlp-sink.log" 2>&1 &
        OTLP_SINK_PID=$!
        PIDS+=("$OTLP_SINK_PID")
        wait_for otlp-sink "$OTLP_SINK_PID" python3 -c "import socket; socket.create_connection(('127.0.0.1', $sink_port), 1)"
        otlp_args=(--otlp-endpoint "http://127.0.0.1:$sink_port" --trace-sample-ratio "$ratio")
    fi
    local program
    for program in etcd nats-server; do
        command -v "$program" >/dev/null || { SUMMARY+="calanque cluster                           not measured: no $program"$'\n'; return 0; }
    done
    for program in calanque-sip-edge calanque-call-control calanque-directory; do
        [ -x "$BIN/$program" ] || { SUMMARY+="calanque cluster                           not measured: no $BIN/$program"$'\n'; return 0; }
    done
    [ -s "$DEMO_YAML" ] || export_demo
    [ -s "$DEMO_YAML" ] || { SUMMARY+="calanque cluster                           not measured: no demo directory exported from calanque run"$'\n'; return 0; }

    local etcd_port etcd_peer nats_port rest_port grpc_port token edge_port
    etcd_port="$(free_port)"; etcd_peer="$(free_port)"; nats_port="$(free_port)"
    rest_port="$(free_port)"; grpc_port="$(free_port)"; edge_port="$(free_port)"
    local etcd_url="http://127.0.0.1:$etcd_port" nats_url="nats://127.0.0.1:$nats_port"
    token="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

    say "cluster: etcd on $etcd_url, nats-server on $nats_url"
    setsid etcd --name bench --data-dir "$WORK/etcd-$key" \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "bench=http://127.0.0.1:$etcd_peer" --initial-cluster-state new \
        --logger zap --log-level warn >"$WORK/etcd-$key.log" 2>&1 &
    local etcd_pid=$!
    PIDS+=("$etcd_pid")
    wait_for etcd "$!" sh -c "curl -fsS '$etcd_url/health' | grep -q '\"health\":\"true\"'"
    setsid nats-server -a 127.0.0.1 -p "$nats_port" >"$WORK/nats-$key.log" 2>&1 &
    local nats_pid=$!
    PIDS+=("$nats_pid")
    wait_for nats-server "$!" python3 -c "import socket; socket.create_connection(('127.0.0.1', $nats_port), 1)"

    say "cluster: calanque-directory, importing the demo directory"
    CALANQUE_DIRECTORY_TOKEN="$token" RUST_LOG=warn setsid "$BIN/calanque-directory" \
        --store "etcd:$etcd_url" --bus "$nats_url" \
        --rest "127.0.0.1:$rest_port" --grpc "127.0.0.1:$grpc_port" >"$WORK/directory-$key.log" 2>&1 &
    local directory_pid=$!
    PIDS+=("$directory_pid")
    wait_for calanque-directory "$!" curl -fsS "http://127.0.0.1:$rest_port/readyz"
    CALANQUE_DIRECTORY_URL="http://127.0.0.1:$rest_port" CALANQUE_TOKEN="$token" \
        timeout 120 "$BIN/calanque" dir import "$DEMO_YAML" >&2 \
        || die "importing the demo directory into the cluster failed"

    say "cluster: calanque-call-control and calanque-sip-edge (udp 127.0.0.1:$edge_port)"
    # Logs at warn in both runs; spans are filtered apart (CALANQUE_TRACE_FILTER, info), so the
    # export run creates and exports them and the other creates none.
    RUST_LOG=warn setsid "$BIN/calanque-call-control" \
        --instance bench-cc-1 --etcd "$etcd_url" \
        --nats "$nats_url" --domain "$DOMAIN" "${otlp_args[@]}" >"$WORK/call-control-$key.log" 2>&1 &
    local cc_pid=$!
    PIDS+=("$cc_pid")
    # Not trusted (INVITEs are challenged, as by Kamailio), but a per-source rate limit no
    # benchmark step reaches.
    RUST_LOG=warn setsid "$BIN/calanque-sip-edge" --edge-id bench-1 \
        --listen "udp:127.0.0.1:$edge_port" --etcd "$etcd_url" --nats "$nats_url" \
        --realm "$DOMAIN" --domain "$DOMAIN" --digest-algorithms MD5 \
        --rate-limit 10000000 --rate-burst 10000000 "${otlp_args[@]}" >"$WORK/edge-$key.log" 2>&1 &
    local edge_pid=$!
    PIDS+=("$edge_pid")
    wait_for calanque-sip-edge "$edge_pid" sip_ping "$edge_port"
    sleep 1
    kill -0 "$cc_pid" 2>/dev/null || die "calanque-call-control exited; log in $WORK/call-control.log"

    local pw1 pw2
    pw1="$(password_of "$WORK/demo-credentials.txt" "$CALLER")"
    pw2="$(password_of "$WORK/demo-credentials.txt" "$CALLEE")"
    caller_csv "$WORK/$key.csv" "$CALLER" "$pw1"
    start_uas "$key" "$edge_port" "$pw2"
    # CPU per call at a fixed rate, before the ladder pushes the processes to their limit.
    local cpu_rate="${CPU_RATE:-800}" before after asked ok rest
    before="$(process_cpu_ticks "$edge_pid" "$cc_pid")"
    SECONDS_PER_STEP="${CPU_SECONDS:-10}" run_uac "$key-cpu" "$edge_port" "$cpu_rate" "$WORK/$key.csv" 127.0.0.1
    after="$(process_cpu_ticks "$edge_pid" "$cc_pid")"
    read -r asked ok rest <<<"$RESULT"
    CPU_PER_CALL[$key]="$(python3 -c "print(f'{($after - $before) / $(getconf CLK_TCK) * 1e6 / max($ok, 1):.0f}')")"
    say "$key: $ok of $asked calls at $cpu_rate/s, ${CPU_PER_CALL[$key]} µs of edge + call-control CPU per call"
    sleep 1
    ladder "calanque-$key" "$edge_port" "$WORK/$key.csv" 127.0.0.1
    summarize "$label" "$key"
    SUMMARY+="$(printf '%-42s %5s µs CPU per call (edge + call-control, at %s calls/s)' "  $key" "${CPU_PER_CALL[$key]}" "$cpu_rate")"$'\n'
    if [ "$mode" = otlp ]; then
        stop_one "$OTLP_SINK_PID"
        SUMMARY+="$(printf '%-42s %s' "  spans exported (requests bytes)" "$(cat "$WORK/otlp-sink.stats" 2>/dev/null || echo '?')")"$'\n'
    fi
    # The next run starts a cluster of its own: nothing of this one may take CPU from it.
    for pid in "$edge_pid" "$cc_pid" "$UAS_PID" "$directory_pid" "$nats_pid" "$etcd_pid"; do
        stop_one "$pid"
    done
}
declare -A CPU_PER_CALL

[ "${ALLINONE:-1}" = 1 ] && allinone_side
[ "${CLUSTER:-1}" = 1 ] && cluster_side
if [ "${CLUSTER:-1}" = 1 ] && [ "${OTLP:-1}" = 1 ]; then
    for ratio in ${OTLP_RATIOS:-1 0.1}; do cluster_side otlp "$ratio"; done
fi

# --- summary ----------------------------------------------------------------------------------
RATIOS=""
for key in allinone-trusted allinone-untrusted cluster; do
    [ -n "${RATE_OF[$key]:-}" ] || continue
    [ "${RATE_OF[$key]}" != 0 ] || continue
    for allocator in $ALLOCATORS; do
        RATIOS+="$(printf '%-42s %s' "ratio $key / kamailio ($allocator)" \
            "$(python3 -c "print(f'{${RATE_OF[$key]} / max(${RATE_OF[kamailio-$allocator]:-0}, 1):.2f}')")")"$'\n'
    done
done

cat <<EOF

== call-setup benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r), calanque $(git rev-parse --short HEAD 2>/dev/null || echo '?')) ==
scenario   INVITE → 407 → ACK → INVITE (MD5) → 180 → 200 → ACK → BYE → 200, UDP, no media;
           SIPp UAC and UAS on this machine; ladder $LADDER calls/s, ${SECONDS_PER_STEP}s each;
           a step passes with < 0.1 % failed calls and ≥ 90 % of its rate achieved
$STEPS_LOG
$SUMMARY$RATIOS$(
    for ratio in ${OTLP_RATIOS:-1 0.1}; do
        key="cluster-otlp-$ratio"
        if [ -n "${CPU_PER_CALL[cluster]:-}" ] && [ -n "${CPU_PER_CALL[$key]:-}" ]; then
            printf '%-42s %s\n' "tracing export overhead, $ratio of calls (CPU per call)" \
                "$(python3 -c "print(f'{(${CPU_PER_CALL[$key]} / max(${CPU_PER_CALL[cluster]}, 1) - 1) * 100:+.1f} %')")"
            printf '%-42s %s\n' "tracing export overhead, $ratio of calls (max calls/s)" \
                "$(python3 -c "print(f'{(${RATE_OF[$key]:-0} / max(${RATE_OF[cluster]:-0}, 1) - 1) * 100:+.1f} %')")"
        fi
    done
)
EOF
