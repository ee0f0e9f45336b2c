#!/usr/bin/env bash
# The protocol cores are sans-IO (ADR 0001): they must not depend on an async runtime.
# Fails when tokio (or another runtime) appears in their normal dependency tree.
set -euo pipefail
status=0
for crate in sip-msg sip-core; do
  tree=$(cargo tree -p "$crate" -e normal --prefix none --offline 2>/dev/null || cargo tree -p "$crate" -e normal --prefix none)
  for runtime in tokio async-std smol mio; do
    if grep -Eq "^${runtime} v" <<<"$tree"; then
      echo "FAIL: $crate depends on $runtime (sans-IO cores must not; see docs/adr/0001-sans-io-sip-core.md)" >&2
      status=1
    fi
  done
done
[ "$status" -eq 0 ] && echo "sans-IO check: sip-msg and sip-core depend on no async runtime"
exit "$status"
