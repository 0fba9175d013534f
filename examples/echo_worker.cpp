// Upstream coproc's echo worker, on the message level: the worker receives
// each message with its flags, so it answers a request with a reply (which
// lowers the host's remaining()) and a plain message with a plain message.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<int>;

void echo(Messenger& m) {
    for (;;) {
        // Blocks until a message arrives; a close request ends the loop.
        coproc::DataMessage<int> msg = m.receive_message_blocking();
        if (msg.request_reply)
            m.send_reply(msg.payload, msg.channel);
        else
            m.send_norequest(msg.payload, msg.channel);
    }
}

int main() {
    coproc::WorkerResource<Messenger> w(echo);
    auto& m = w.messenger();

    // Plain messages come back as plain messages: nothing is owed.
    for (int i = 0; i < 3; ++i) m.send_norequest(i);
    fmt::print("remaining after 3 plain messages: {}\n", m.remaining());
    for (int i = 0; i < 3; ++i) {
        auto back = m.receive_message_blocking(5s);
        fmt::print("echo {} (reply: {})\n", back.payload, back.is_reply);
    }

    // Requests come back as replies: remaining() counts down to 0.
    for (int i = 10; i < 13; ++i) m.send_request(i);
    fmt::print("remaining after 3 requests: {}\n", m.remaining());
    for (auto& back : m.receive_remaining_messages(coproc::Channel{}, 5s))
        fmt::print("echo {} (reply: {})\n", back.payload, back.is_reply);
    fmt::print("remaining at the end: {}\n", m.remaining());
}
