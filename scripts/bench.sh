#!/usr/bin/env bash
# `make bench`: runs the criterion micro-benchmarks on one core and prints a summary table
# (median time per iteration, operations per second, and ratios within each group).
set -euo pipefail
cd "$(dirname "$0")/.."
# One core: the figures are per-core figures, and the other core absorbs machine noise.
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
rm -rf target/criterion
"${pin[@]}" cargo bench --locked -p sip-msg --bench parse_print -- --noplot "$@"
"${pin[@]}" cargo bench --locked -p sip-core --bench transactions -- --noplot "$@"
python3 scripts/bench_summary.py target/criterion
