#!/usr/bin/env python3
"""Python's pools on the tasks bench_pool times, for the ratios in
scripts/bench: multiprocessing.Pool(2).map over 100,000 ints with its default
chunksize, Pool.map with chunksize=1 over 5,000, and
ProcessPoolExecutor(2).submit of 3,000 tasks; x -> x*x. Prints one JSON line
of medians (tasks per second). usage: bench_pool.py [ROUNDS]"""
import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import time


def square(x):
    return x * x


def rate(n, run, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with multiprocessing.Pool(2) as pool:
        pool.map(square, range(1000))  # warm
        mp_map = rate(100_000, lambda: pool.map(square, range(100_000)), rounds)
        mp_chunk1 = rate(5_000, lambda: pool.map(square, range(5_000), chunksize=1), rounds)
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        executor.submit(square, 1).result()  # warm

        def submit_all():
            futures = [executor.submit(square, i) for i in range(3_000)]
            for f in futures:
                f.result()

        executor_submit = rate(3_000, submit_all, rounds)
    print(json.dumps({"mp_map_tasks_per_s": round(mp_map), "mp_chunk1_tasks_per_s": round(mp_chunk1),
                      "executor_submit_tasks_per_s": round(executor_submit)}))
