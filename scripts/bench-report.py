#!/usr/bin/env python3
"""Turns Google Benchmark's JSON (several repetitions) into a table of
medians and the JSON line of ratios that scripts/bench ends with."""
import json
import statistics
import sys

data = json.load(open(sys.argv[1]))
runs = {}
for b in data["benchmarks"]:
    if b.get("run_type") != "iteration":
        continue
    name = b["run_name"].replace("/real_time", "")
    runs.setdefault(name, []).append(b)


def med(name, key):
    return statistics.median(r[key] for r in runs[name])


def ns(name):  # median wall time per iteration, in ns
    return med(name, "real_time")


def p(name, q):
    xs = sorted(r["real_time"] for r in runs[name])
    return xs[min(len(xs) - 1, int(q * len(xs)))]


print(f"{'benchmark':34} {'median':>14} {'min':>12} {'max':>12} {'rate (median)':>18}")
for name, rs in sorted(runs.items()):
    times = [r["real_time"] for r in rs]
    rate = ""
    if "items_per_second" in rs[0]:
        rate = f"{statistics.median(r['items_per_second'] for r in rs) / 1e6:.3f} M/s"
    if "bytes_per_second" in rs[0]:
        rate = f"{statistics.median(r['bytes_per_second'] for r in rs) / 1e9:.2f} GB/s"
    print(f"{name:34} {statistics.median(times):12.0f}ns {min(times):10.0f}ns {max(times):10.0f}ns {rate:>18}")

ips = lambda n: med(n, "items_per_second")
bps = lambda n: med(n, "bytes_per_second")
result = {
    "rtt_ratio": ns("BM_coproc_rtt_priority") / ns("BM_raw_rtt"),
    "rtt_multi_ratio": ns("BM_coproc_rtt_multi") / ns("BM_raw_rtt"),
    # Per-message latency distribution of a round trip (median of the rounds' p99 and p50).
    "rtt_p99_over_median": med("BM_coproc_rtt_latency", "p99_ns") / med("BM_coproc_rtt_latency", "p50_ns"),
    # The same for the raw ping-pong: the machine's own tail.
    "raw_rtt_p99_over_median": med("BM_raw_rtt_latency", "p99_ns") / med("BM_raw_rtt_latency", "p50_ns"),
    "rtt_p99_ratio": med("BM_coproc_rtt_latency", "p99_ns") / med("BM_raw_rtt_latency", "p99_ns"),
    "stream64_mmsgs": max(ips("BM_coproc_stream64_single"), ips("BM_coproc_stream64_batch")) / 1e6,
    "stream64_single_ratio": ips("BM_coproc_stream64_single") / ips("BM_raw_stream64_single"),
    "stream64_batch_vs_raw_coalesced": ips("BM_coproc_stream64_batch") / ips("BM_raw_stream64_coalesced"),
    "stream64_vs_zmq": max(ips("BM_coproc_stream64_single"), ips("BM_coproc_stream64_batch")) / ips("BM_zmq_stream64"),
    "stream64_vs_boost_mq": max(ips("BM_coproc_stream64_single"), ips("BM_coproc_stream64_batch")) / ips("BM_boost_mq_stream64"),
    "rtt_vs_zmq": ns("BM_zmq_rtt") / ns("BM_coproc_rtt_priority"),
    "rtt_vs_boost_mq": ns("BM_boost_mq_rtt") / ns("BM_coproc_rtt_priority"),
    "large1m_ratio": bps("BM_coproc_large/1048576") / bps("BM_raw_large/1048576"),
    "large16m_ratio": bps("BM_coproc_large/16777216") / bps("BM_raw_large/16777216"),
    # The same payloads as coproc::Blob messages (received without a copy).
    "large1m_blob_ratio": bps("BM_coproc_large_blob/1048576") / bps("BM_raw_large/1048576"),
    "large16m_blob_ratio": bps("BM_coproc_large_blob/16777216") / bps("BM_raw_large/16777216"),
    # The same payloads over a ZeroMQ PAIR socket (ipc), the nearest peer.
    "large1m_vs_zmq": bps("BM_coproc_large/1048576") / bps("BM_zmq_large/1048576"),
    "spawn_ratio": ns("BM_coproc_spawn") / ns("BM_raw_fork_waitpid"),
    # Spawn mode: a worker program started + joined / posix_spawn + waitpid of the same program.
    "spawn_exec_ratio": ns("BM_coproc_spawn_exec") / ns("BM_raw_posix_spawn"),
    "spawn_exec_ms": ns("BM_coproc_spawn_exec") / 1e6,
    "rounds": len(runs["BM_raw_rtt"]),
}
# Sweep for the plot, one row per payload size: medians of time per message
# (us) and throughput (GB/s), the rounds' min and max throughput of raw and
# coproc, and the Blob and ZeroMQ peers' throughput (0 when not measured).
def gbps_all(name):
    return [r["bytes_per_second"] / 1e9 for r in runs.get(name, [])]


with open(sys.argv[2] if len(sys.argv) > 2 else "/dev/null", "w") as sweep:
    sweep.write("# bytes raw_us coproc_us raw_GBps coproc_GBps raw_min raw_max coproc_min coproc_max blob_GBps zmq_GBps\n")
    for size in sorted({int(n.split("/")[1]) for n in runs if n.startswith("BM_raw_large/")}):
        r, c = f"BM_raw_large/{size}", f"BM_coproc_large/{size}"
        if c not in runs:
            continue
        raw_all, coproc_all = gbps_all(r), gbps_all(c)
        peers = [statistics.median(gbps_all(n)) if n in runs else 0.0
                 for n in (f"BM_coproc_large_blob/{size}", f"BM_zmq_large/{size}")]
        sweep.write(f"{size} {ns(r) / 1e3:.3f} {ns(c) / 1e3:.3f} {bps(r) / 1e9:.4f} {bps(c) / 1e9:.4f} "
                    f"{min(raw_all):.4f} {max(raw_all):.4f} {min(coproc_all):.4f} {max(coproc_all):.4f} "
                    f"{peers[0]:.4f} {peers[1]:.4f}\n")

print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
