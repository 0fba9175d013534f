// A pool that maps a function over many inputs, with a progress line on the
// terminal, while an urgent task submitted late overtakes the background
// tasks still waiting.
#include <coproc/pool.hpp>
#include <coproc/progress_line.hpp>
#include <fmt/format.h>

#include <cstdint>
#include <vector>

// A task: priority is read as a message's (lower first; none = last).
struct Task {
    int priority = 10;  // background
    std::uint64_t first = 1;
    std::uint64_t count = 1;
    template <class A>
    void serialize(A& a) {
        a(priority, first, count);
    }
};

// Runs in the workers: the Collatz steps from each of first .. first +
// count - 1 down to 1, added up.
std::uint64_t collatz_steps(const Task& t) {
    std::uint64_t steps = 0;
    for (std::uint64_t start = t.first; start < t.first + t.count; ++start)
        for (std::uint64_t n = start; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
    return steps;
}

int main() {
    // Two workers, each holding at most a few tasks ahead (window), so
    // priorities decide what runs next.
    coproc::Pool<Task, std::uint64_t> pool(collatz_steps, {.workers = 2, .window = 8});

    // 1. map: results in input order; ProgressLine draws on stderr only
    //    when it is a terminal.
    std::vector<Task> inputs;
    for (std::uint64_t n = 1; n <= 100'000; ++n) inputs.push_back({10, n, 1});
    const auto steps = pool.map(inputs, {.progress = coproc::ProgressLine("collatz")});
    std::uint64_t longest = 0;
    for (std::size_t i = 0; i < steps.size(); ++i)
        if (steps[i] > steps[longest]) longest = i;
    fmt::print("map: {} results; the longest chain below 100000 starts at {} ({} steps)\n", steps.size(),
               inputs[longest].first, steps[longest]);

    // 2. 200 background tasks (each 2000 numbers), then one urgent one: it
    //    overtakes every background task the workers do not hold yet.
    std::vector<coproc::Pool<Task, std::uint64_t>::Future> background;
    for (std::uint64_t i = 0; i < 200; ++i) background.push_back(pool.submit(Task{10, 1'000'000 + i * 2000, 2000}));
    auto urgent = pool.submit(Task{0, 27, 1});
    fmt::print("urgent task: 27 takes {} steps\n", urgent.get());
    std::size_t still_waiting = 0;
    for (auto& f : background)
        if (!f.ready()) ++still_waiting;
    fmt::print("background tasks not yet done when the urgent one was: {}\n", still_waiting >= 150 ? "most" : "few");
    for (auto& f : background) (void)f.get();

    const auto s = pool.stats();
    fmt::print("done {} tasks, failed {}, restarts {}\n", s.done, s.failed, s.restarts);
}
