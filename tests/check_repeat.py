#!/usr/bin/env python3
"""Runs a program N times and checks that every run prints exactly the
expected output: a claim an example makes must hold every time.
Usage: check_repeat.py N EXPECTED_FILE PROGRAM"""
import subprocess
import sys

runs, expected_file, program = int(sys.argv[1]), sys.argv[2], sys.argv[3]
expected = open(expected_file).read()
bad = 0
for i in range(runs):
    result = subprocess.run([program], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or result.stdout != expected:
        bad += 1
        if bad <= 3:
            print(f"run {i}: exit {result.returncode}, output {result.stdout!r}")
print(f"{runs - bad} of {runs} runs printed the expected output")
sys.exit(1 if bad else 0)
