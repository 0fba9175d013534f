// Requests and replies: remaining() counts requests whose reply has not been
// received yet; receive_remaining() yields replies until it is back to 0.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<int>;

void echo(Messenger& m) {
    for (;;) m.send_reply(m.receive_blocking());
}

int main() {
    coproc::WorkerResource<Messenger> w(echo);
    auto& m = w.messenger();

    fmt::print("remaining before: {}\n", m.remaining());
    m.send_request(0);
    fmt::print("remaining after sending: {}\n", m.remaining());
    fmt::print("reply: {}\n", m.receive_blocking(5s));
    fmt::print("remaining after the reply: {}\n", m.remaining());

    for (int i = 0; i < 3; ++i) m.send_request(i);
    fmt::print("replies:");
    // Lazy: each step blocks (at most 5 s) for the next reply.
    for (int reply : m.receive_remaining(coproc::Channel{}, 5s)) fmt::print(" {}", reply);
    fmt::print("\n");
}
