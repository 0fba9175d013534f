// A pool whose workers crash now and then: every task's result still
// arrives, the crashed workers are replaced, and the counters say so.
#include <coproc/pool.hpp>
#include <coproc/shared_value.hpp>
#include <fmt/format.h>

#include <csignal>
#include <vector>

// Runs in the workers. Every task whose input is a multiple of 97 crashes
// its worker (SIGKILL, as the OOM killer would) on its first run only: the
// pool retries it on a fresh worker, where it succeeds. (The shared array
// remembers, across processes, which tasks already crashed once.)
struct Flaky {
    coproc::SharedArray<int> crashed{1000};
    long operator()(const int& x) const {
        if (x % 97 == 0 && crashed.fetch_add(static_cast<std::size_t>(x), 1) == 0) std::raise(SIGKILL);
        return static_cast<long>(x) * x;
    }
};

int main() {
    coproc::PoolOptions options;
    options.workers = 2;
    options.max_retries = 2;    // a task may be run three times
    options.max_restarts = 50;  // more restarts than this within restart_period: the pool gives up
    coproc::Pool<int, long> pool(Flaky{}, options);

    std::vector<int> inputs;
    for (int x = 0; x < 1000; ++x) inputs.push_back(x);
    const auto squares = pool.map(inputs, {.chunksize = 10});

    bool all_right = true;
    for (std::size_t i = 0; i < inputs.size(); ++i)
        all_right = all_right && squares[i] == static_cast<long>(inputs[i]) * inputs[i];
    const auto s = pool.stats();
    fmt::print("{} results, all correct: {}\n", squares.size(), all_right ? "yes" : "no");
    fmt::print("tasks done {}, failed {}, workers restarted {}\n", s.done, s.failed, s.restarts);
    fmt::print("live workers: {}\n", s.workers.size());
}
