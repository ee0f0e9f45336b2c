#!/usr/bin/env bash
# `make fuzz`: runs each sip-msg libFuzzer target for the given number of seconds
# (default 60), seeded from the shared corpora. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
crates/sip-msg/fuzz/seed-corpus.sh
export RUSTC_BOOTSTRAP=1   # cargo-fuzz needs nightly flags; only stable is installed here
cargo fuzz run --fuzz-dir crates/sip-msg/fuzz -O parse_datagram \
  -- -max_total_time="$seconds" -max_len=4096
cargo fuzz run --fuzz-dir crates/sip-msg/fuzz -O stream_framer \
  -- -max_total_time="$seconds" -max_len=8192
