// Channels: one socket, separate queues. An echo worker answers on the
// channel each message came from.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<std::string>;

constexpr int CHANNEL_A = 1;
constexpr int CHANNEL_B = 2;

// Runs in the worker process. A close request ends the loop with
// ResourceRequestedClose, which the library treats as a clean exit.
void echo_on_channels(Messenger& m) {
    for (;;) {
        m.await_available();
        for (int ch : {CHANNEL_A, CHANNEL_B})
            for (auto& msg : m.receive_available(ch)) m.send_norequest(msg, ch);
    }
}

int main() {
    coproc::WorkerResource<Messenger> w(echo_on_channels);
    auto& m = w.messenger();
    fmt::print("available on A before sending: {}\n", m.available(CHANNEL_A));
    fmt::print("available on B before sending: {}\n", m.available(CHANNEL_B));

    m.send_norequest("hello", CHANNEL_A);
    m.send_norequest("hi", CHANNEL_B);
    fmt::print("A: {}\n", m.receive_blocking(CHANNEL_A, 5s));
    fmt::print("B: {}\n", m.receive_blocking(CHANNEL_B, 5s));
    fmt::print("worker exited: {}\n", w.join(5s));
}
