// The message level of the messengers (Python's *_message calls: payloads
// with their request/reply flags), pipe_poll, and a messenger built on an fd
// the user made (the public coproc::UniqueFd).
#include <catch2/catch.hpp>

#include <coproc/coproc.hpp>

#include <sys/socket.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEMPLATE_TEST_CASE("received messages carry their flags and channel", "[message]", coproc::MultiMessenger<int>,
                   coproc::PriorityMessenger<int>) {
    auto [worker, host] = TestType::new_pair();
    host.send_norequest(1, "jobs");
    host.send_request(2, "jobs");
    host.send_reply(3, "jobs");
    host.send_data_message(4, true, false, "jobs");
    host.send_data_message(5, false, true, "jobs");
    host.send_data_message(6, false, false, "jobs");
    CHECK(host.requests_sent("jobs") == 2);
    CHECK(host.messages_sent("jobs") == 6);

    auto m1 = worker.receive_message_blocking("jobs", 5s);
    CHECK(m1.payload == 1);
    CHECK_FALSE(m1.request_reply);
    CHECK_FALSE(m1.is_reply);
    CHECK(m1.channel == coproc::Channel("jobs"));
    auto m2 = worker.pop_message_from_queue("jobs");
    CHECK(m2.payload == 2);
    CHECK(m2.request_reply);
    CHECK_FALSE(m2.is_reply);
    auto m3 = worker.try_receive_message("jobs");
    REQUIRE(m3.has_value());
    CHECK(m3->payload == 3);
    CHECK(m3->is_reply);
    CHECK_FALSE(m3->request_reply);

    const auto rest = worker.receive_available_messages("jobs");
    REQUIRE(rest.size() == 3);
    CHECK((rest[0].payload == 4 && rest[0].request_reply && !rest[0].is_reply));
    CHECK((rest[1].payload == 5 && !rest[1].request_reply && rest[1].is_reply));
    CHECK((rest[2].payload == 6 && !rest[2].request_reply && !rest[2].is_reply));
    // Counted exactly like the payload calls: every pop received, replies as replies.
    CHECK(worker.messages_received("jobs") == 6);
    CHECK(worker.replies_received("jobs") == 2);
    CHECK(worker.remaining("jobs") == -2);
    CHECK_FALSE(worker.try_receive_message("jobs").has_value());
    CHECK_THROWS_AS(worker.pop_message_from_queue("jobs"), std::out_of_range);
}

TEST_CASE("send_data_message refuses a message that is both request and reply", "[message]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    CHECK_THROWS_AS(host.send_data_message(1, true, true), std::invalid_argument);
    CHECK(host.messages_sent() == 0);
    CHECK_FALSE(worker.pipe_poll());
}

TEST_CASE("upstream's echo worker: replies to requests, echoes plain messages without a reply", "[message]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    std::thread echo([&w = worker] {
        try {
            for (;;) {
                auto m = w.receive_message_blocking(10s);
                if (m.request_reply)
                    w.send_reply(m.payload, m.channel);
                else
                    w.send_norequest(m.payload, m.channel);
            }
        } catch (const coproc::ResourceRequestedClose&) {
        }
    });
    for (int i = 0; i < 10; ++i) host.send_norequest(i);
    CHECK(host.remaining() == 0);
    std::vector<int> plain;
    while (plain.size() < 10) plain.push_back(host.receive_blocking(5s));
    CHECK(plain == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    for (int i = 0; i < 10; ++i) host.send_request(i);
    CHECK(host.remaining() == 10);
    std::vector<int> replies;
    for (auto& m : host.receive_remaining_messages(coproc::Channel{}, 5s)) {
        CHECK(m.is_reply);
        replies.push_back(m.payload);
    }
    CHECK(replies == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(host.remaining() == 0);
    host.send_close_request();
    echo.join();
}

TEST_CASE("receive_remaining_messages has a per-item timeout", "[message]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    host.send_request(1);
    auto range = host.receive_remaining_messages(coproc::Channel{}, 50ms);
    CHECK_THROWS_AS(range.begin(), coproc::Timeout);
}

TEST_CASE("pipe_poll: true while something is readable, queued messages do not count", "[message]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    CHECK_FALSE(worker.pipe_poll());
    host.send_norequest(7);
    // A socketpair's data is readable as soon as send returned.
    CHECK(worker.pipe_poll());
    CHECK(worker.available() == 1);
    CHECK_FALSE(worker.pipe_poll());
    {
        auto gone = std::move(host);  // the peer closes its end: end of file is readable
    }
    CHECK(worker.pipe_poll());
    CHECK(worker.receive_blocking(1s) == 7);
}

TEST_CASE("a messenger on a socket the user made: coproc::UniqueFd is public", "[message]") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    coproc::MultiMessenger<std::string> a{coproc::UniqueFd(sv[0])};
    coproc::MultiMessenger<std::string> b{coproc::UniqueFd(sv[1])};
    a.send_request("ping", "c");
    auto m = b.receive_message_blocking("c", 5s);
    CHECK(m.payload == "ping");
    CHECK(m.request_reply);
    b.send_reply(m.payload + "-pong", "c");
    CHECK(a.receive_blocking("c", 5s) == "ping-pong");
    CHECK(a.remaining("c") == 0);
    // Large payloads go through the socket here (no side channel).
    const std::string big(1 << 20, 'x');
    std::string got;
    std::thread reader([&b = b, &got] { got = b.receive_blocking(10s); });
    a.send_norequest(big, {}, 10s);
    reader.join();
    CHECK(got == big);
}
