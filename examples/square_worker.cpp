// The worker program of examples/spawned_workers.cpp: a program of its own,
// which its host starts in spawn mode. It answers each number with its square
// until the host closes it. (Run by hand, it says it needs a host.)
#include <coproc/coproc.hpp>
#include <fmt/format.h>

using Messenger = coproc::PriorityMessenger<long>;

int main() {
    try {
        // Takes the channel its host passed, runs the target, returns the
        // exit code: 0 when the host's close request ends the loop.
        return coproc::worker_main<Messenger>([](Messenger& m) {
            for (;;) {
                const long n = m.receive_blocking();
                m.send_reply(n * n);
            }
        });
    } catch (const coproc::SpawnError& e) {
        fmt::print(stderr, "square_worker: {}\n", e.what());
        return 2;
    }
}
