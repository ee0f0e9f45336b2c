#!/usr/bin/env python3
"""Adds up cargo test's per-binary result lines into one closing line, so the run ends on
the real totals rather than on the last (often empty) doc-test binary."""
import re
import sys

passed = failed = ignored = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        passed += int(m.group(1))
        failed += int(m.group(2))
        ignored += int(m.group(3))
if passed + failed == 0:
    sys.exit("no test ran")
print(f"total: {passed} passed, {failed} failed, {ignored} skipped")
sys.exit(1 if failed else 0)
