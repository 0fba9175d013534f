// Compute workers: a scoped block with several workers serving prioritized
// requests. Urgent jobs overtake the background jobs already queued; results
// are gathered with receive_remaining; the block's end shuts everything down.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

using namespace std::chrono_literals;

struct Task {
    int priority = 1;  // 0 = urgent, 1 = background
    int id = 0;
    std::uint64_t n = 0;  // compute the n-th Fibonacci number mod 2^64
    template <class A>
    void serialize(A& a) {
        a(priority, id, n);
    }
};
struct Result {
    int id = 0;
    std::uint64_t value = 0;
    int served = 0;  // position in which the worker served it
    template <class A>
    void serialize(A& a) {
        a(id, value, served);
    }
};
using Msg = std::variant<Task, Result>;
using Messenger = coproc::PriorityMessenger<Msg>;

constexpr int GO = 1;  // handshake channel: "everything is queued"

std::uint64_t fib(std::uint64_t n) {
    std::uint64_t a = 0, b = 1;
    for (std::uint64_t i = 0; i < n; ++i) a = std::exchange(b, a + b);
    return a;
}

// Each worker serves its queue in priority order until the host closes it.
void compute(Messenger& m) {
    (void)m.receive_blocking(GO);
    for (int served = 0;; ++served) {
        (void)m.available();  // queue everything that arrived, so priority can act
        const auto task = std::get<Task>(m.receive_blocking());
        m.send_reply(Result{task.id, fib(task.n), served});
    }
}

int main() {
    constexpr int workers = 3;
    std::vector<Result> results;
    {
        std::vector<coproc::WorkerResource<Messenger>> pool;
        pool.reserve(workers);
        for (int i = 0; i < workers; ++i) pool.emplace_back(compute);

        // Per worker: four background jobs, then one urgent job sent last.
        int id = 0;
        for (auto& w : pool) {
            for (int j = 0; j < 4; ++j) w.messenger().send_request(Task{1, id++, 1000u * static_cast<unsigned>(j)});
            w.messenger().send_request(Task{0, id++, 90});
            w.messenger().send_norequest(Task{0, -1, 0}, GO);
        }
        for (auto& w : pool)
            for (auto& msg : w.messenger().receive_remaining(coproc::Channel{}, 10s))
                results.push_back(std::get<Result>(msg));
    }  // each worker: close request, exit 0, reaped

    std::sort(results.begin(), results.end(), [](const Result& a, const Result& b) { return a.id < b.id; });
    for (const auto& r : results)
        fmt::print("job {:2} ({}) served {} by its worker: fib = {}\n", r.id,
                   r.id % 5 == 4 ? "urgent    " : "background",
                   r.served == 0 ? "first" : fmt::format("#{}", r.served + 1), r.value);
    const bool urgent_first =
        std::all_of(results.begin(), results.end(), [](const Result& r) { return (r.id % 5 == 4) == (r.served == 0); });
    fmt::print("every urgent job overtook the background jobs: {}\n", urgent_first ? "yes" : "no");
}
