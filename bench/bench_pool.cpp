// Pool figures for scripts/bench: map and submit throughput on 2 workers
// (x -> x*x over ints), the speed-up of ~1 ms CPU-bound tasks on 2 workers,
// and how long a killed worker's replacement takes to serve again against a
// plain WorkerResource start. Prints one JSON line of medians over ROUNDS.
// Not pinned to one CPU (unlike bench_ipc): parallelism is the point here.
//   bench_pool [ROUNDS]
#include <coproc/pool.hpp>
#include <coproc/worker_resource.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

long square(const int& x) { return static_cast<long>(x) * x; }

// About `iterations` of dependent integer work: a CPU-bound task. Not
// inlined, so the serial loop below calls it for every task.
[[gnu::noinline]] long spin(const int& iterations) {
    unsigned long h = 1469598103934665603UL;
    for (int i = 0; i < iterations; ++i) h = (h ^ static_cast<unsigned long>(i)) * 1099511628211UL;
    return static_cast<long>(h & 0xffff);
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
    coproc::PoolOptions two;
    two.workers = 2;

    // map: 100,000 ints, default chunksize.
    std::vector<int> ints(100'000);
    for (std::size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<int>(i);
    std::vector<double> map_rates, submit_rates, speedups, restart_ratios;
    {
        coproc::Pool<int, long> pool(square, two);
        (void)pool.map(ints);  // warm: pages of the buffers touched once
        for (int r = 0; r < rounds; ++r) {
            const auto t0 = Clock::now();
            const auto out = pool.map(ints);
            map_rates.push_back(static_cast<double>(out.size()) / seconds_since(t0));
        }
        // submit: one future per task, 20,000 tasks, then every result.
        for (int r = 0; r < rounds; ++r) {
            constexpr int n = 20'000;
            std::vector<coproc::Pool<int, long>::Future> futures;
            futures.reserve(n);
            const auto t0 = Clock::now();
            for (int i = 0; i < n; ++i) futures.push_back(pool.submit(i));
            long sum = 0;
            for (auto& f : futures) sum += f.get();
            submit_rates.push_back(n / seconds_since(t0));
            if (sum < 0) std::abort();
        }
    }

    // Speed-up: 200 tasks of ~1 ms each, serial in this process against the pool.
    {
        int iterations = 100'000;
        volatile long sink = 0;  // keeps the calls (spin is pure)
        for (;;) {               // calibrate to ~1 ms per task
            const auto t0 = Clock::now();
            sink = sink + spin(iterations);
            const double s = seconds_since(t0);
            if (s >= 0.001 || iterations > (1 << 29)) break;
            iterations *= 2;
        }
        std::vector<int> tasks;  // all different: no call can be reused
        for (int i = 0; i < 200; ++i) tasks.push_back(iterations + i);
        coproc::Pool<int, long> pool(spin, two);
        (void)pool.map(std::vector<int>(4, iterations));
        for (int r = 0; r < rounds; ++r) {
            auto t0 = Clock::now();
            long sum = 0;
            for (const int t : tasks) sink = sink + spin(t);
            const double serial = seconds_since(t0);
            t0 = Clock::now();
            const auto out = pool.map(tasks);
            const double parallel = seconds_since(t0);
            if (sum < 0 || out.size() != tasks.size()) std::abort();
            speedups.push_back(serial / parallel);
        }
    }

    // Restart: SIGKILL the worker, then time until a task's result is back
    // (death seen, reaped, replacement forked and ready, task run), against
    // a plain WorkerResource start plus one round trip.
    {
        coproc::PoolOptions one;
        one.workers = 1;
        one.max_restarts = 1'000'000;
        coproc::Pool<int, long> pool(square, one);
        (void)pool.submit(1).get();
        using M = coproc::PriorityMessenger<int>;
        for (int r = 0; r < rounds; ++r) {
            auto t0 = Clock::now();
            {
                coproc::WorkerResource<M> w([](M& m) {
                    for (;;) m.send_reply(m.receive_blocking());
                });
                w.messenger().send_request(1);
                (void)w.messenger().receive_blocking();
            }
            const double plain = seconds_since(t0);
            const long pid = pool.stats().workers.at(0).pid;
            ::kill(static_cast<pid_t>(pid), SIGKILL);
            t0 = Clock::now();
            (void)pool.submit(2).get();
            const double restart = seconds_since(t0);
            restart_ratios.push_back(restart / plain);
        }
    }

    fmt::print(
        "{{\"pool_map_tasks_per_s\": {:.0f}, \"pool_submit_tasks_per_s\": {:.0f}, \"pool_speedup_2cpu\": {:.3f}, "
        "\"pool_restart_ratio\": {:.3f}}}\n",
        median(map_rates), median(submit_rates), median(speedups), median(restart_ratios));
}
