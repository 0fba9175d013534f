// Spawn mode: workers that are programs of their own (examples/square_worker),
// started from a host that already runs threads. Forking a process whose
// other threads may hold locks is unsafe; spawning is not: the worker shares
// nothing with the host but stdin, stdout, stderr and its channel.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<long>;

int main() {
    // The worker program sits next to this one.
    const auto here = std::filesystem::read_symlink("/proc/self/exe").parent_path();
    const coproc::Executable square{(here / "square_worker").string(), {}};

    // Three threads, each with its own worker: the sum of the squares of its
    // ten numbers. (A worker's parent-death signal fires when the thread that
    // started it exits: each thread joins its worker before it ends.)
    constexpr int threads = 3;
    std::vector<std::string> lines(threads);
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) {
        clients.emplace_back([&square, &lines, t] {
            coproc::WorkerResource<Messenger> worker(square);
            for (long n = 1; n <= 10; ++n) worker.messenger().send_request(n + 10L * t);
            long sum = 0;
            for (const long sq : worker.messenger().receive_remaining(coproc::Channel{}, 10s)) sum += sq;
            const coproc::ExitStatus status = worker.join(10s);
            lines[static_cast<std::size_t>(t)] = fmt::format("thread {}: squares of {}..{} sum to {}; the worker {}", t,
                                                             1 + 10 * t, 10 + 10 * t, sum, status.describe());
        });
    }
    for (auto& c : clients) c.join();
    for (const auto& line : lines) fmt::print("{}\n", line);
}
