#!/usr/bin/env python3
"""Counts Catch2 test cases from meson's testlog.json; prints one line per
test executable and ends with 'N passed, M failed'. Exit 1 on any failure.
A test executable that crashed or timed out without a Catch2 summary counts
as one failed test."""
import json
import re
import sys

ALL_PASSED = re.compile(r"All tests passed \((\d+) assertions? in (\d+) test cases?\)")
CASES = re.compile(r"test cases:\s+(\d+)\s+\|\s+(\d+) passed\s+\|\s+(\d+) failed")
CASES_ALL_FAILED = re.compile(r"test cases:\s+(\d+)\s+\|\s+(\d+) failed")
PLAIN = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)

passed = failed = 0
for line in open(sys.argv[1], encoding="utf-8"):
    entry = json.loads(line)
    out = (entry.get("stdout") or "") + (entry.get("stderr") or "")
    ok = entry.get("result") == "OK"
    if m := ALL_PASSED.search(out):
        p, f = int(m.group(2)), 0
    elif m := CASES.search(out):
        p, f = int(m.group(2)), int(m.group(3))
    elif m := CASES_ALL_FAILED.search(out):
        p, f = 0, int(m.group(2))
    elif m := PLAIN.search(out):
        p, f = int(m.group(1)), int(m.group(2))
    else:
        p, f = (1, 0) if ok else (0, 1)
    if not ok and f == 0:
        f = 1  # crashed or timed out after its last report
    print(f"  {entry['name']}: {p} passed, {f} failed ({entry.get('result')}, {entry.get('duration', 0):.1f} s)")
    passed += p
    failed += f
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
