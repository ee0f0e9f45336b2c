#!/usr/bin/env python3
"""Summarises criterion results: median per iteration, ops/s, and ratios inside each group.

Reads target/criterion/**/new/{benchmark,estimates}.json. A benchmark with an Elements
throughput counts that many operations per iteration. Within a group, every function is also
compared with the group's first function (e.g. calanque vs rsip on the same input)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    median_ns = json.loads(est.read_text())["median"]["point_estimate"]
    elements = 1
    tp = bench.get("throughput") or {}
    if "Elements" in tp:
        elements = tp["Elements"]
    ops = elements * 1e9 / median_ns
    rows.append((bench.get("group_id", ""), bench.get("function_id") or "", bench.get("value_str") or "", median_ns, ops))

if not rows:
    sys.exit("no criterion results under " + str(root))
print(f"{'group':34} {'function':22} {'input':14} {'median/iter':>14} {'ops/s':>14}")
for g, f, v, ns, ops in rows:
    print(f"{g:34} {f:22} {v:14} {ns/1000:11.2f} µs {ops:14,.0f}")

by_group_input = {}
for g, f, v, ns, ops in rows:
    by_group_input.setdefault((g, v), []).append((f, ops))
ratios = [(k, items) for k, items in by_group_input.items() if len(items) > 1]
if ratios:
    print("\nratios (ops/s relative to the first function of the group and input):")
    for (g, v), items in ratios:
        base_f, base_ops = items[0]
        for f, ops in items[1:]:
            print(f"  {g} {v}: {f} / {base_f} = {ops / base_ops:.2f}")
