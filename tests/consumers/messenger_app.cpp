// A consumer of libcoproc alone: one forked worker squares a number.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>

using Messenger = coproc::PriorityMessenger<int>;

int main() {
    coproc::WorkerResource<Messenger> worker([](Messenger& m) {
        for (;;) {
            const int x = m.receive_blocking();
            m.send_reply(x * x);
        }
    });
    worker.messenger().send_request(7);
    fmt::print("messenger: {}\n", worker.messenger().receive_blocking(std::chrono::seconds(10)));
}
