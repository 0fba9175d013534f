// Messengers in one process: counters step by step, special frames, priority
// order, exceptions, timeouts, back-pressure, dead peers and bad input.
#include <catch2/catch.hpp>

#include <coproc/messenger.hpp>

#include "socket.hpp"  // make_socketpair (lib/, private)

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using coproc::Channel;

namespace {

using State = std::tuple<std::size_t, std::size_t, std::int64_t, std::int64_t>;

// Python coproc's test state tuple: (worker available, host available, worker remaining, host remaining).
template <class M>
State state(M& worker, M& host) {
    return {worker.available(), host.available(), worker.remaining(), host.remaining()};
}

struct Prio {
    int priority = 0;
    int id = 0;
    template <class A>
    void serialize(A& a) {
        a(priority, id);
    }
};
struct FnPrio {
    double p = 0;
    int id = 0;
    double priority() const { return p; }
    template <class A>
    void serialize(A& a) {
        a(p, id);
    }
};
namespace adl {
struct External {
    int urgency = 0;
    int id = 0;
    template <class A>
    void serialize(A& a) {
        a(urgency, id);
    }
};
int coproc_priority(const External& e) { return e.urgency; }
}  // namespace adl
struct NoPrio {
    int id = 0;
    template <class A>
    void serialize(A& a) {
        a(id);
    }
};

struct CustomError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

TEMPLATE_TEST_CASE("a messenger pair step by step: available and remaining on both sides", "[messenger]",
                   coproc::PriorityMessenger<int>, coproc::MultiMessenger<int>) {
    auto [worker, host] = TestType::new_pair();
    CHECK(state(worker, host) == State{0, 0, 0, 0});

    host.send_norequest(1);
    CHECK(state(worker, host) == State{1, 0, 0, 0});
    CHECK(worker.receive_blocking(1s) == 1);
    CHECK(state(worker, host) == State{0, 0, 0, 0});

    host.send_request(2);
    CHECK(state(worker, host) == State{1, 0, 0, 1});
    CHECK(worker.receive_blocking(1s) == 2);
    CHECK(state(worker, host) == State{0, 0, 0, 1});

    worker.send_reply(3);
    CHECK(state(worker, host) == State{0, 1, 0, 1});  // an unread reply does not lower remaining
    CHECK(host.receive_blocking(1s) == 3);
    CHECK(state(worker, host) == State{0, 0, 0, 0});

    CHECK(host.requests_sent() == 1);
    CHECK(host.messages_sent() == 2);
    CHECK(host.replies_received() == 1);
    CHECK(host.messages_received() == 1);
    CHECK(worker.messages_received() == 2);
    CHECK(worker.replies_received() == 0);

    // send_request_multiple: replies come back in order through receive_remaining
    host.send_request_multiple(std::vector<int>{1, 2, 3});
    CHECK(host.remaining() == 3);
    CHECK(worker.receive_available() == std::vector<int>{1, 2, 3});
    for (int v : {1, 2, 3}) worker.send_reply(v * 10);
    std::vector<int> replies;
    for (int r : host.receive_remaining(Channel{}, 1s)) replies.push_back(r);
    CHECK(replies == std::vector<int>{10, 20, 30});
    CHECK(host.available() == 0);
    CHECK(host.remaining() == 0);

    // close request: raised by the peer's next receive call
    host.send_close_request();
    CHECK_THROWS_AS(worker.available(), coproc::ResourceRequestedClose);
    CHECK(worker.available() == 0);  // raised once

    // error: raised as the same standard type
    worker.send_error(std::invalid_argument("bad value"));
    CHECK_THROWS_AS(host.available(), std::invalid_argument);
}

TEST_CASE("try_send_close_request: false, not an exception, once the peer closed its end", "[messenger]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    CHECK(host.try_send_close_request(1s));
    CHECK_THROWS_AS(worker.available(), coproc::ResourceRequestedClose);
    {
        auto gone = std::move(worker);  // closes the worker's end at the end of this scope
    }
    CHECK_FALSE(host.try_send_close_request(1s));
    CHECK_THROWS_AS(host.send_close_request(1s), coproc::ChannelClosed);  // the throwing form still throws
}

TEST_CASE("frames before a close or error stay queued, frames after it stay buffered", "[messenger]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    host.send_norequest(1);
    host.send_norequest(2);
    host.send_close_request();
    host.send_norequest(3);
    CHECK_THROWS_AS(worker.available(), coproc::ResourceRequestedClose);
    CHECK(worker.queue_size() == 2);
    CHECK(worker.receive_available() == std::vector<int>{1, 2, 3});

    host.send_norequest(4);
    host.send_error(std::out_of_range("mid-stream"));
    host.send_norequest(5);
    CHECK_THROWS_WITH(worker.receive_blocking(1s), "mid-stream");
    CHECK(worker.queue_size() == 1);
    CHECK(worker.receive_blocking(1s) == 4);
    CHECK(worker.receive_blocking(1s) == 5);

    // receive_blocking raises a close already waiting before returning queued data (Python's order).
    host.send_norequest(6);
    CHECK(worker.available() == 1);
    host.send_close_request();
    CHECK_THROWS_AS(worker.receive_blocking(1s), coproc::ResourceRequestedClose);
    CHECK(worker.receive_blocking(1s) == 6);
}

TEST_CASE("channels: integers, strings and none are separate queues and counters", "[messenger]") {
    auto [worker, host] = coproc::PriorityMessenger<std::string>::new_pair();
    host.send_request("a", 1);
    host.send_request("b", "one");
    host.send_norequest("c");
    CHECK(worker.available(1) == 1);
    CHECK(worker.available("one") == 1);
    CHECK(worker.available() == 1);
    CHECK(worker.available(2) == 0);
    CHECK(worker.receive_blocking("one", 1s) == "b");
    worker.send_reply("B", "one");
    CHECK(host.remaining(1) == 1);
    CHECK(host.remaining("one") == 1);
    CHECK(host.receive_blocking("one", 1s) == "B");
    CHECK(host.remaining("one") == 0);
    CHECK(host.remaining(1) == 1);
    CHECK(fmt::format("{}", host.request_ctr()) ==
          "RequestCtr(requests={1: 1, 'one': 1}, replies={'one': 1}, sent={None: 1, 1: 1, 'one': 1}, received={'one': "
          "1})");
}

TEST_CASE("priority: lower first, none last, FIFO ties, per channel, every way of declaring it", "[messenger]") {
    SECTION("data member") {
        auto [worker, host] = coproc::PriorityMessenger<Prio>::new_pair();
        for (int i = 0; i < 6; ++i) host.send_norequest(Prio{i % 2, i});
        std::vector<int> ids;
        for (auto& m : worker.receive_available()) ids.push_back(m.id);
        CHECK(ids == std::vector<int>{0, 2, 4, 1, 3, 5});  // even ids have priority 0
    }
    SECTION("member function, ADL and variants; no priority goes last") {
        using Msg = std::variant<FnPrio, adl::External, NoPrio>;
        auto [worker, host] = coproc::PriorityMessenger<Msg>::new_pair();
        host.send_norequest(NoPrio{1});
        host.send_norequest(FnPrio{5.0, 2});
        host.send_norequest(adl::External{-1, 3});
        host.send_norequest(NoPrio{4});
        host.send_norequest(FnPrio{-1.0, 5});
        host.send_norequest(adl::External{5, 6}, "other");
        std::vector<int> ids;
        for (auto& m : worker.receive_available()) std::visit([&](auto& v) { ids.push_back(v.id); }, m);
        CHECK(ids == std::vector<int>{3, 5, 2, 1, 4});
        CHECK(worker.available("other") == 1);
    }
    SECTION("MultiMessenger ignores priority") {
        auto [worker, host] = coproc::MultiMessenger<Prio>::new_pair();
        for (int i = 0; i < 6; ++i) host.send_norequest(Prio{i % 2 == 0 ? 9 : 0, i});
        std::vector<int> ids;
        for (auto& m : worker.receive_available()) ids.push_back(m.id);
        CHECK(ids == std::vector<int>{0, 1, 2, 3, 4, 5});
    }
    SECTION("priority only reorders what is queued at the moment of a pop") {
        auto [worker, host] = coproc::PriorityMessenger<Prio>::new_pair();
        host.send_norequest(Prio{5, 1});
        CHECK(worker.receive_blocking(1s).id == 1);
        host.send_norequest(Prio{5, 2});
        host.send_norequest(Prio{0, 3});
        CHECK(worker.receive_blocking(1s).id == 3);
        CHECK(worker.receive_blocking(1s).id == 2);
    }
}

TEST_CASE("exceptions keep their type across the pipe; unknown types arrive as RemoteError", "[messenger]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    worker.send_error(std::runtime_error("rt"));
    CHECK_THROWS_AS(host.available(), std::runtime_error);
    worker.send_error(std::length_error("len"));
    CHECK_THROWS_AS(host.available(), std::length_error);
    worker.send_error(CustomError("custom"));
    try {
        (void)host.available();
        FAIL("no exception");
    } catch (const coproc::RemoteError& e) {
        CHECK(e.type_name() == "(anonymous namespace)::CustomError");
        CHECK(e.message() == "custom");
    }
    coproc::register_exception<CustomError>();
    worker.send_error(CustomError("custom again"));
    CHECK_THROWS_AS(host.available(), CustomError);
    worker.send_error(std::make_exception_ptr(42));
    CHECK_THROWS_AS(host.available(), coproc::RemoteError);
    // control frames touch no counter
    CHECK(worker.messages_sent() == 0);
}

TEST_CASE("unsolicited replies make remaining negative (as in Python coproc)", "[messenger]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    worker.send_reply(1);
    CHECK(host.receive_blocking(1s) == 1);
    CHECK(host.remaining() == -1);
    std::vector<int> got;
    for (int v : host.receive_remaining()) got.push_back(v);
    CHECK(got.empty());
}

TEST_CASE("every blocking call has a timed form that throws Timeout", "[messenger]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    CHECK_THROWS_AS(worker.receive_blocking(Channel{}, 20ms), coproc::Timeout);
    CHECK_THROWS_AS(worker.receive_blocking(20ms), coproc::Timeout);
    CHECK_THROWS_AS(worker.await_available(20ms), coproc::Timeout);
    CHECK_THROWS_AS(worker.receive_available_blocking(20ms), coproc::Timeout);
    CHECK_THROWS_AS(worker.receive_available_blocking(Channel{}, 20ms), coproc::Timeout);
    host.send_request(1);
    auto range = host.receive_remaining(Channel{}, 20ms);
    CHECK_THROWS_AS(range.begin(), coproc::Timeout);
    CHECK_FALSE(worker.try_receive(5).has_value());
    CHECK(worker.try_receive() == 1);
}

TEST_CASE("await_available waits for a new message on any channel", "[messenger]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    std::thread sender([&h = host] { h.send_norequest(7, "late"); });
    worker.await_available(5s);
    sender.join();
    CHECK(worker.queue_size("late") == 1);
}

TEST_CASE("receive_available_blocking waits for its channel, then returns everything queued there", "[messenger]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    // Messages already queued are returned at once, in queue order (an int
    // has no priority: FIFO); other channels keep theirs.
    host.send_norequest(3);
    host.send_norequest(1);
    host.send_norequest(9, "other");
    CHECK(worker.receive_available_blocking(5s) == std::vector<int>{3, 1});
    CHECK(worker.queue_size("other") == 1);
    // Nothing queued: it blocks until a message arrives on its channel; a
    // message on another channel does not end the wait.
    std::thread sender([&h = host] {
        h.send_norequest(4, "other");
        h.send_norequest(5, "mine");
        h.send_norequest(6, "mine");
    });
    std::vector<int> got = worker.receive_available_blocking("mine");
    sender.join();
    // 6 may still be in flight when 5 is read; the next call gets it.
    if (got.size() == 1) got.push_back(worker.receive_available_blocking("mine", 5s).front());
    CHECK(got == std::vector<int>{5, 6});
    CHECK(worker.queue_size("other") == 2);
    CHECK(worker.messages_received() == 2);  // counted per channel, when popped
    CHECK(worker.messages_received("mine") == 2);
    CHECK(worker.messages_received("other") == 0);

    // A control frame is raised before anything is popped; what came before
    // it stays queued.
    host.send_norequest(7);
    host.send_close_request();
    CHECK_THROWS_AS(worker.receive_available_blocking(5s), coproc::ResourceRequestedClose);
    CHECK(worker.receive_available_blocking(5s) == std::vector<int>{7});
}

TEST_CASE("back-pressure: a timed send to a peer that does not read throws Timeout, frames stay intact",
          "[messenger]") {
    auto [worker, host] = coproc::MultiMessenger<std::string>::new_pair();
    const std::string chunk(100'000, 'x');
    int sent = 0;
    bool timed_out = false;
    while (!timed_out && sent < 10'000) {
        try {
            host.send_norequest(chunk + std::to_string(sent), Channel{}, 20ms);
            ++sent;
        } catch (const coproc::Timeout&) {
            timed_out = true;
        }
    }
    REQUIRE(timed_out);
    // A committed partial frame is counted and completed by the next send.
    const auto counted = host.messages_sent();
    CHECK((counted == static_cast<std::uint64_t>(sent) || counted == static_cast<std::uint64_t>(sent) + 1));
    std::thread reader([&w = worker, n = counted + 1, &chunk] {
        for (std::uint64_t i = 0; i + 1 < n; ++i) CHECK(w.receive_blocking(5s) == chunk + std::to_string(i));
        CHECK(w.receive_blocking(5s) == "after");
    });
    host.send_norequest("after", Channel{}, 5s);
    reader.join();
}

TEST_CASE("a dead peer: earlier data stays receivable, then ChannelClosed; send never SIGPIPEs", "[messenger]") {
    auto pair = coproc::PriorityMessenger<int>::new_pair();
    auto host = std::move(pair.host);
    {
        auto worker = std::move(pair.worker);
        worker.send_norequest(1);
        worker.send_request(2, 9);
    }  // worker end closed
    CHECK(host.receive_blocking(1s) == 1);
    CHECK(host.receive_blocking(9, 1s) == 2);
    CHECK_THROWS_AS(host.receive_blocking(1s), coproc::ChannelClosed);
    CHECK_THROWS_AS(host.await_available(1s), coproc::ChannelClosed);
    CHECK_THROWS_AS(host.receive_available_blocking(), coproc::ChannelClosed);  // no timeout needed: never hangs
    const auto before = host.messages_sent();
    CHECK_THROWS_AS(host.send_norequest(3), coproc::ChannelClosed);
    CHECK(host.messages_sent() == before);  // counters change only on success
}

TEST_CASE("a message type mismatch is a clear ProtocolError", "[messenger]") {
    auto sockets = coproc::detail::make_socketpair();
    coproc::MultiMessenger<int> a(std::move(sockets.first));
    coproc::MultiMessenger<std::string> b(std::move(sockets.second));
    a.send_norequest(1);
    CHECK_THROWS_WITH(b.available(), Catch::Contains("message type differs") &&
                                         Catch::Contains("this side has std::") && Catch::Contains("the peer int"));
}

TEST_CASE("garbage and oversized frames from the peer are ProtocolErrors", "[messenger]") {
    auto sockets = coproc::detail::make_socketpair();
    coproc::MultiMessenger<std::string> m(std::move(sockets.first), coproc::MessengerOptions{.max_frame_size = 1024});
    coproc::MultiMessenger<std::string> peer(std::move(sockets.second),
                                             coproc::MessengerOptions{.max_frame_size = 1 << 20});
    SECTION("oversized") {
        peer.send_norequest(std::string(2000, 'x'));
        CHECK_THROWS_AS(m.receive_blocking(1s), coproc::ProtocolError);
    }
    SECTION("garbage after a good frame") {
        peer.send_norequest("good");
        const char junk[] = "this is not a frame header at all, no sir";
        REQUIRE(::send(peer.fd(), junk, sizeof junk, MSG_NOSIGNAL) == static_cast<long>(sizeof junk));
        CHECK_THROWS_AS(m.available(), coproc::ProtocolError);
        CHECK(m.queue_size() == 1);  // the good frame before it was queued
    }
    SECTION("a payload that does not decode") {
        std::string frame;
        coproc::detail::append_frame(frame, coproc::detail::FrameKind::data, Channel{}, 0.0,
                                     std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8), 1024);
        REQUIRE(::send(peer.fd(), frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<long>(frame.size()));
        CHECK_THROWS_AS(m.receive_blocking(1s), coproc::ProtocolError);
    }
    SECTION("refused on the sending side too") {
        coproc::MultiMessenger<std::string>& small = m;
        CHECK_THROWS_AS(small.send_norequest(std::string(2000, 'x')), coproc::ProtocolError);
        CHECK(small.messages_sent() == 0);
    }
}

// Sends all 1,000 before reading a reply: with plain blocking sends both sides
// would block in send() (each small frame costs ~1 KiB of socket buffer).
TEST_CASE("a pair split across two threads echoes 1,000 requests", "[messenger]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    std::thread echo([&w = worker] {
        try {
            for (;;) w.send_reply(w.receive_blocking(10s) * 2);
        } catch (const coproc::ResourceRequestedClose&) {
        }
    });
    long sum = 0;
    for (int i = 0; i < 1000; ++i) host.send_request(i);
    for (int r : host.receive_remaining(Channel{}, 10s)) sum += r;
    host.send_close_request();
    echo.join();
    CHECK(sum == 999 * 1000);
}

TEST_CASE("messengers format like coproc's repr", "[messenger]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    host.send_request(1, 1);
    host.send_request(2, 1);
    CHECK(worker.available(1) == 2);
    CHECK(fmt::format("{}", worker) ==
          fmt::format("PriorityMessenger(fd={}, queue=PriorityMultiQueue(queues={{1: 2 messages}}), "
                      "request_ctr=RequestCtr(requests={{}}, replies={{}}, sent={{}}, received={{}}))",
                      worker.fd()));
    static_assert(!std::is_copy_constructible_v<coproc::PriorityMessenger<int>>);
    static_assert(std::is_nothrow_move_constructible_v<coproc::PriorityMessenger<int>>);
}

TEST_CASE("a channel per job: state stays bounded on both sides, counters stay right", "[messenger][memory]") {
    auto [worker, host] = coproc::PriorityMessenger<int>::new_pair();
    constexpr int jobs = 20000;
    for (int job = 0; job < jobs; ++job) {
        const Channel ch(fmt::format("job-{}", job));
        host.send_request(job, ch);
        REQUIRE(worker.receive_blocking(ch, 5s) == job);
        worker.send_reply(job * 2, ch);
        REQUIRE(host.receive_blocking(ch, 5s) == job * 2);
        REQUIRE(host.remaining(ch) == 0);
    }
    CHECK(host.queue().channel_count() <= decltype(host)::queue_type::max_idle_channels);
    CHECK(worker.queue().channel_count() <= decltype(worker)::queue_type::max_idle_channels);
    CHECK(host.request_ctr().channel_count() <= coproc::RequestCtr::kept_settled_channels + 8);
    CHECK(worker.request_ctr().channel_count() <= coproc::RequestCtr::kept_settled_channels + 8);
    // Recent channels keep their tallies.
    const Channel last(fmt::format("job-{}", jobs - 1));
    CHECK(host.messages_sent(last) == 1);
    CHECK(host.replies_received(last) == 1);
    // An old one was forgotten; used again, remaining() is right.
    CHECK(host.remaining("job-0") == 0);
    host.send_request(1, "job-0");
    CHECK(host.remaining("job-0") == 1);
    worker.send_reply(worker.receive_blocking("job-0", 5s), "job-0");
    CHECK(host.receive_blocking("job-0", 5s) == 1);
    CHECK(host.remaining("job-0") == 0);
}

TEST_CASE("a channel with a request outstanding is never forgotten", "[messenger][memory]") {
    auto [worker, host] = coproc::MultiMessenger<int>::new_pair();
    host.send_request(1, "kept");
    for (int job = 0; job < 5000; ++job) {
        const Channel ch(job);
        host.send_norequest(job, ch);
        REQUIRE(worker.receive_blocking(ch, 5s) == job);
    }
    CHECK(host.remaining("kept") == 1);
    CHECK(host.requests_sent("kept") == 1);
    // And an unsolicited reply's negative balance is kept too.
    worker.send_reply(7, "negative");
    CHECK(host.receive_blocking("negative", 5s) == 7);
    for (int job = 0; job < 5000; ++job) {
        const Channel ch(job);
        worker.send_norequest(job, ch);
        REQUIRE(host.receive_blocking(ch, 5s) == job);
    }
    CHECK(host.remaining("negative") == -1);
    CHECK(host.remaining("kept") == 1);
}

TEST_CASE("a receive with a backlog still orders a message that arrived after the backlog was queued",
          "[messenger][order]") {
    auto [worker, host] = coproc::PriorityMessenger<Prio>::new_pair();
    for (int i = 0; i < 100; ++i) host.send_norequest(Prio{10, i});
    REQUIRE(worker.available() == 100);  // all queued
    CHECK(worker.receive_blocking(5s).id == 0);
    CHECK(worker.receive_blocking(5s).id == 1);  // nothing new: served from the queue
    host.send_norequest(Prio{0, 1000});          // arrives behind a backlog
    CHECK(worker.receive_blocking(5s).id == 1000);
    CHECK(worker.try_receive()->id == 2);
    host.send_norequest(Prio{1, 2000});
    CHECK(worker.try_receive()->id == 2000);
    host.send_norequest(Prio{2, 3000});
    CHECK(worker.available() == 98);
    CHECK(worker.receive_available().front().id == 3000);
    // A close request behind a backlog is raised by the next receive, as before.
    host.send_norequest(Prio{10, 4000});
    REQUIRE(worker.available() == 1);
    host.send_close_request();
    CHECK_THROWS_AS(worker.receive_blocking(5s), coproc::ResourceRequestedClose);
    CHECK(worker.receive_blocking(5s).id == 4000);
}
