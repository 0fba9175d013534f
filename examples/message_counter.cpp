// botogram's message counter: workers count every message they process in a
// SharedMemory; a "count" request returns the total. Written twice: with a
// preparer that initialises the count (update() is atomic), and with a named
// lock around a plain get-then-set.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<std::string>;

// Version 1: the preparer set "count" to 0 once; update() needs no lock.
void counter_with_preparer(Messenger& m, coproc::SharedMemory shared) {
    for (;;) {
        const std::string msg = m.receive_blocking();
        if (msg == "count")
            m.send_reply(std::to_string(shared.get<long>("count")));
        else
            shared.update<long>("count", [](long& n) { ++n; });
    }
}

// Version 2: a named lock makes the get-then-set atomic.
void counter_with_lock(Messenger& m, coproc::SharedMemory shared) {
    for (;;) {
        const std::string msg = m.receive_blocking();
        auto guard = shared.lock("count");
        const long n = shared.get_or<long>("count", 0);
        if (msg == "count")
            m.send_reply(std::to_string(n));
        else
            shared.set("count", n + 1);
    }
}

template <class Target>
void run(const char* title, Target target, coproc::SharedMemory shared) {
    std::vector<coproc::WorkerResource<Messenger>> workers;
    workers.reserve(3);
    for (int i = 0; i < 3; ++i) workers.emplace_back(target, shared);
    // 30 messages spread over the workers, then ask each for the count.
    for (int i = 0; i < 30; ++i)
        workers[static_cast<std::size_t>(i % 3)].messenger().send_norequest(fmt::format("message {}", i));
    for (auto& w : workers) {
        w.messenger().send_request("count");
        (void)w.messenger().receive_blocking(5s);  // each worker has processed its share
    }
    workers[0].messenger().send_request("count");
    fmt::print("{}: count = {}\n", title, workers[0].messenger().receive_blocking(5s));
}

int main() {
    coproc::SharedMemory with_preparer;
    with_preparer.add_preparer([](coproc::SharedMemory& m) { m.set("count", 0L); });
    run("with a preparer", counter_with_preparer, with_preparer);

    run("with a named lock", counter_with_lock, coproc::SharedMemory{});
}
