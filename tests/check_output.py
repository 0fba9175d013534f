#!/usr/bin/env python3
"""Runs an example and compares its output with the expected text.
usage: check_output.py EXPECTED_FILE PROGRAM [ARGS...]
Prints '1 passed, 0 failed' or a diff and '0 passed, 1 failed'."""
import difflib
import subprocess
import sys

expected = open(sys.argv[1], encoding="utf-8").read()
run = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=60)
if run.returncode == 0 and run.stdout == expected:
    print("1 passed, 0 failed")
    sys.exit(0)
sys.stdout.writelines(difflib.unified_diff(expected.splitlines(True), run.stdout.splitlines(True), "expected", "got"))
print(run.stderr)
print(f"exit status {run.returncode}")
print("0 passed, 1 failed")
sys.exit(1)
