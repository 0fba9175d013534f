// The README's Quick start, as a program: a worker serves the urgent request
// first, because both requests travel in one write and wait in its priority
// queue together. The suite runs it 1,000 times (tests/meson.build).
#include <cctype>
#include <chrono>
#include <coproc/coproc.hpp>
#include <fmt/format.h>
#include <string>
#include <vector>
using namespace std::chrono_literals;

struct Job {
    int priority = 1;  // lower is served first; no member = served last
    std::string text;
    template <class A>
    void serialize(A& a) {
        a(priority, text);
    }  // cereal
};
using Messenger = coproc::PriorityMessenger<Job>;

// Runs in the worker process. A close request from the host ends the loop with
// coproc::ResourceRequestedClose, which counts as a clean exit (code 0).
void shout(Messenger& m) {
    for (;;) {
        Job j = m.receive_blocking();
        for (auto& c : j.text) c = static_cast<char>(std::toupper(c));
        m.send_reply(j);
    }
}

int main() {
    coproc::WorkerResource<Messenger> w(shout);  // fork; waits for the worker's hello
    // Both requests in one write: the worker finds them queued together, so
    // the urgent one is served first, every time (two sends could let the
    // worker take "later" before "urgent" arrives).
    w.messenger().send_request_multiple(std::vector<Job>{{1, "later"}, {0, "urgent"}});
    for (Job& r : w.messenger().receive_remaining(coproc::Channel{}, 5s))
        fmt::print("{}\n", r.text);  // each step waits at most 5 s
}  // close request, grace, SIGTERM, grace, SIGKILL, reap — never throws, never a zombie
