#!/usr/bin/env bash
# Seeds crates/sip-msg/fuzz/corpus/<target>/ from the shared corpora at run time (never
# committed): the PJSIP sip and sip-dialog fuzz seeds and the RFC 4475 messages.
# Usage: crates/sip-msg/fuzz/seed-corpus.sh [testdata-dir]   (default: $CALANQUE_TESTDATA
# or ../shared/testdata beside the checkout)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
data="${1:-${CALANQUE_TESTDATA:-$repo/../shared/testdata}}"
[ -d "$data/pjsip-fuzz-seeds" ] || { echo "no corpora at $data (set CALANQUE_TESTDATA)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for zip in fuzz-sip_seed_corpus.zip fuzz-sip-dialog_seed_corpus.zip; do
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$data/pjsip-fuzz-seeds/$zip" "$tmp"
done
for target in parse_datagram stream_framer; do mkdir -p "$here/corpus/$target"; done
seed() { # seed <name> <file>: as is for parse_datagram; for stream_framer prefixed with the
         # byte its target reads as the read size (64).
    cp "$2" "$here/corpus/parse_datagram/$1"
    { printf '\x40'; cat "$2"; } > "$here/corpus/stream_framer/$1"
}
while IFS= read -r -d '' f; do seed "pjsip-$(basename "$f")" "$f"; done < <(find "$tmp" -type f -print0)
for f in "$data"/rfc4475/*.dat; do seed "rfc4475-$(basename "$f")" "$f"; done
echo "seeded $(ls "$here/corpus/parse_datagram" | wc -l) inputs per target under $here/corpus"
