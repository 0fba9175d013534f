// Special messages: a close request raises ResourceRequestedClose in the
// worker; an error sent back raises the same exception type in the host.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<int>;

void worker(Messenger& m) {
    try {
        for (;;) (void)m.receive_blocking();
    } catch (const coproc::ResourceRequestedClose&) {
        // Python's ValueError is std::invalid_argument here.
        m.send_error(std::invalid_argument("process was closed successfully"));
    }
}

int main() {
    coproc::WorkerResource<Messenger> w(worker);
    w.messenger().send_close_request();
    try {
        (void)w.messenger().receive_blocking(5s);
    } catch (const std::invalid_argument& e) {
        fmt::print("successfully caught value error sent from process: {}\n", e.what());
    }
    fmt::print("worker exited: {}\n", w.join(5s));
}
