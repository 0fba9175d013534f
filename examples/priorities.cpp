// Priorities: lower is served first, equal priorities keep their order. The
// worker reads only after all six messages are queued (a handshake, no sleep).
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;

struct Job {
    int priority = 0;  // read by PriorityMessenger; travels in the frame header
    std::string text;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(priority, text);
    }
};
using Messenger = coproc::PriorityMessenger<Job>;

constexpr int CONTROL = 1;  // channel for the handshake
constexpr int JOBS = 2;

void worker(Messenger& m) {
    (void)m.receive_blocking(CONTROL);  // "all sent": everything is in the socket now
    for (int i = 0; i < 6; ++i) {
        // available() drains the socket, so all six are queued before the first pop.
        (void)m.available(JOBS);
        fmt::print("{}\n", m.receive_blocking(JOBS).text);
    }
    std::fflush(stdout);
    m.send_norequest(Job{0, "done"}, CONTROL);
}

int main() {
    coproc::WorkerResource<Messenger> w(worker);
    auto& m = w.messenger();
    for (int i = 0; i < 3; ++i) {
        m.send_norequest(Job{1, fmt::format("low {}", i)}, JOBS);
        m.send_norequest(Job{0, fmt::format("high {}", i)}, JOBS);
    }
    m.send_norequest(Job{0, "all sent"}, CONTROL);
    (void)m.receive_blocking(CONTROL, 5s);  // the worker has printed everything
}
