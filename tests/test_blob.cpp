// Blob messages: received where they arrived (shared-memory slot or read
// buffer) without a copy; slots held by live blobs; the socket fallback;
// malformed payloads; blobs inside other messages; across processes.
#include <catch2/catch.hpp>

#include <coproc/coproc.hpp>

#include <signal.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Blob;
namespace detail = coproc::detail;

namespace {

using M = coproc::PriorityMessenger<Blob>;

using coproc::test::pattern;

coproc::MessengerOptions options(std::size_t threshold, std::size_t limit = std::size_t{64} << 20) {
    coproc::MessengerOptions o;
    o.shared_memory_threshold = threshold;
    o.shared_memory_limit = limit;
    return o;
}

// Sends from another thread (a payload bigger than the socket buffer needs
// its reader running) with a deadline, and receives here.
Blob send_and_receive(M& from, M& to, const std::string& bytes) {
    std::thread sender([&] { from.send_norequest(Blob::copy_of(bytes), coproc::Channel{}, 10s); });
    Blob got;
    try {
        got = to.receive_blocking(10s);
    } catch (...) {
        sender.join();
        throw;
    }
    sender.join();
    return got;
}

struct Tagged {
    std::string name;
    Blob data;
    template <class A>
    void serialize(A& ar) {
        ar(name, data);
    }
};

}  // namespace

TEST_CASE("blobs of every size arrive intact; big ones are views of shared memory", "[blob]") {
    auto [worker, host] = M::new_pair(options(64 * 1024));
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{60}, std::size_t{73}, std::size_t{4096},
                                   std::size_t{64 * 1024}, std::size_t{3} << 20}) {
        const std::string bytes = pattern(size, static_cast<unsigned>(size));
        host.send_norequest(Blob::copy_of(bytes));
        const Blob got = worker.receive_blocking(10s);
        CHECK(got.size() == size);
        CHECK(got.view() == bytes);
        CHECK(got.in_shared_memory() == (size + 8 >= 64 * 1024));
    }
}

TEST_CASE("without shared memory a big blob is the buffer the socket was read into", "[blob]") {
    auto [worker, host] = M::new_pair(options(0));
    const std::string bytes = pattern(std::size_t{2} << 20, 7);
    const Blob got = send_and_receive(host, worker, bytes);
    CHECK_FALSE(got.in_shared_memory());
    CHECK(got.view() == bytes);
}

TEST_CASE("a live blob keeps its slot; the sender falls back to the socket, then reuses the slot", "[blob]") {
    // Room for two 1 MiB slots only.
    auto [worker, host] = M::new_pair(options(4096, std::size_t{2} << 20));
    const std::string a = pattern(900 * 1024, 1), b = pattern(900 * 1024, 2), c = pattern(900 * 1024, 3);
    host.send_norequest(Blob::copy_of(a));
    host.send_norequest(Blob::copy_of(b));
    Blob got_a = worker.receive_blocking(10s);
    const Blob got_b = worker.receive_blocking(10s);
    CHECK(got_a.in_shared_memory());
    CHECK(got_b.in_shared_memory());
    // Both slots are held by live blobs: the third payload takes the socket.
    const Blob got_c = send_and_receive(host, worker, c);
    CHECK_FALSE(got_c.in_shared_memory());
    CHECK(got_c.view() == c);
    // Letting go of one frees its slot for the next payload...
    got_a = Blob();
    host.send_norequest(Blob::copy_of(c));
    const Blob again = worker.receive_blocking(10s);
    CHECK(again.in_shared_memory());
    CHECK(again.view() == c);
    // ...and the held ones were never overwritten.
    CHECK(got_b.view() == b);
    CHECK(host.link().shared_memory_mapped() <= (std::size_t{2} << 20));
}

TEST_CASE("clone() is an owned copy that outlives the slot", "[blob]") {
    auto [worker, host] = M::new_pair(options(4096));
    const std::string bytes = pattern(100 * 1024, 5);
    host.send_norequest(Blob::copy_of(bytes));
    Blob copy;
    {
        const Blob got = worker.receive_blocking(10s);
        REQUIRE(got.in_shared_memory());
        copy = got.clone();
    }
    CHECK_FALSE(copy.in_shared_memory());
    CHECK(copy.view() == bytes);
    // The slot is free again: the next payload reuses it without growing.
    const std::size_t mapped = host.link().shared_memory_mapped();
    host.send_norequest(Blob::copy_of(bytes));
    CHECK(worker.receive_blocking(10s).view() == bytes);
    CHECK(host.link().shared_memory_mapped() == mapped);
}

TEST_CASE("a payload that is not exactly one blob is a ProtocolError", "[blob]") {
    const auto payload = [](std::uint64_t size_tag, std::size_t bytes) {
        std::string s(sizeof size_tag, '\0');
        std::memcpy(s.data(), &size_tag, sizeof size_tag);
        s.append(bytes, 'x');
        return detail::Bytes::copy_of(s);
    };
    CHECK(detail::adopt_blob(payload(5, 5), 0).view() == "xxxxx");
    CHECK_THROWS_AS(detail::adopt_blob(payload(6, 5), 0), coproc::ProtocolError);                      // truncated
    CHECK_THROWS_AS(detail::adopt_blob(payload(4, 5), 0), coproc::ProtocolError);                      // trailing bytes
    CHECK_THROWS_AS(detail::adopt_blob(payload(~std::uint64_t{0}, 5), 0), coproc::ProtocolError);      // huge
    CHECK_THROWS_AS(detail::adopt_blob(detail::Bytes::copy_of("1234567"), 0), coproc::ProtocolError);  // no size
}

TEST_CASE("a blob inside another message is decoded as a copy, wire-compatible with std::string", "[blob]") {
    const std::string bytes = pattern(40 * 1024, 9);
    const Tagged t{"frame-1", Blob::copy_of(bytes)};
    std::string encoded;
    coproc::encode_append(encoded, t);
    const auto back = coproc::decode<Tagged>(encoded);
    CHECK(back.name == "frame-1");
    CHECK(back.data.view() == bytes);
    // Same bytes on the wire as a std::string holding them.
    std::string as_string;
    coproc::encode_append(as_string, Blob::copy_of(bytes));
    CHECK(as_string == [&] {
        std::string s;
        coproc::encode_append(s, bytes);
        return s;
    }());
    CHECK_THROWS_AS(coproc::decode<Blob>(encoded.substr(0, 20)), coproc::ProtocolError);

    auto [worker, host] = coproc::MultiMessenger<Tagged>::new_pair(options(4096));
    host.send_norequest(Tagged{"over the link", Blob::copy_of(bytes)});
    const Tagged got = worker.receive_blocking(10s);
    CHECK(got.name == "over the link");
    CHECK(got.data.view() == bytes);
}

TEST_CASE("blobs between processes, both ways, and from a worker that was killed", "[blob]") {
    const std::string big = pattern(std::size_t{5} << 20, 11);
    SECTION("echo") {
        coproc::WorkerOptions wo;
        wo.messenger = options(64 * 1024);
        coproc::WorkerResource<M> w(wo, [](M& m) {
            coproc::test::child_watchdog();
            for (;;) {
                Blob b = m.receive_blocking();
                m.send_reply(std::move(b));  // sent from where it lies: the host's slot
            }
        });
        for (int round = 0; round < 5; ++round) {
            w.messenger().send_request(Blob::copy_of(big));
            const Blob back = w.messenger().receive_blocking(20s);
            CHECK(back.in_shared_memory());
            CHECK(back.view() == big);
        }
    }
    SECTION("the payloads outlive their sender") {
        coproc::WorkerOptions wo;
        wo.messenger = options(64 * 1024);
        coproc::WorkerResource<M> w(wo, [](M& m) {
            coproc::test::child_watchdog();
            m.send_norequest(Blob::copy_of(pattern(std::size_t{5} << 20, 11)));
            m.send_norequest(Blob::copy_of(pattern(std::size_t{1} << 20, 12)));
            (void)m.receive_blocking();  // until the host kills us
        });
        while (w.messenger().available() < 2) w.messenger().await_available(20s);
        (void)::kill(static_cast<pid_t>(w.pid()), SIGKILL);
        CHECK(w.join(20s) == coproc::ExitStatus::killed_by(SIGKILL));
        const Blob first = w.messenger().receive_blocking(20s);
        const Blob second = w.messenger().receive_blocking(20s);
        CHECK(first.view() == big);
        CHECK(second.view() == pattern(std::size_t{1} << 20, 12));
    }
}
