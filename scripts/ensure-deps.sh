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

if [ "${#need_apt[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing with apt: ${need_apt[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need_apt[@]}"
fi
