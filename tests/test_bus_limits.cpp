// The bus at its limits: an ipc:// address already bound, a subscriber to
// thousands of channels, non-finite numbers, a subscriber that stops reading,
// and the handshake's wire prefix.
#include <catch2/catch.hpp>

#include <coproc/bus.hpp>
#include <coproc/worker_resource.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Bus;
using coproc::Json;

namespace {

std::string ipc_path(const std::string& name) { return "/tmp/coproc-test-" + std::to_string(::getpid()) + "-" + name; }

double rss_mb() {
    long pages = 0, resident = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 20);
}

}  // namespace

TEST_CASE("a second publisher cannot take over a live ipc:// address; a stale file is replaced", "[bus][limits]") {
    const std::string path = ipc_path("takeover");
    const Bus bus("ipc://" + path);
    auto first = bus.publish();
    first.start();
    auto second = bus.publish();
    CHECK_THROWS_AS(second.start(), coproc::Error);
    // The first still serves new subscribers.
    auto sub = bus.subscribe("x");
    sub.wait_ready(5s);
    first.put("x", "from the first");
    auto m = sub.get(5s);
    REQUIRE(m.has_value());
    CHECK(m->as<std::string>() == "from the first");
    first.stop();

    // A socket file nobody listens on any more is not "in use".
    const std::string stale = ipc_path("stale");
    {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, stale.c_str(), stale.size());
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        ::close(fd);  // the file stays
    }
    auto third = Bus("ipc://" + stale).publish();
    CHECK_NOTHROW(third.start());
    third.stop();
    ::unlink(stale.c_str());
}

TEST_CASE("a subscriber to 1,500 channels hears every one of them after wait_ready", "[bus][limits]") {
    const Bus bus("ipc://" + ipc_path("many"));
    auto pub = bus.publish();
    pub.start();
    std::vector<std::string> channels;
    for (int i = 0; i < 1500; ++i) channels.push_back("ch" + std::to_string(i));
    auto sub = bus.subscribe(channels);
    sub.wait_ready(10s);
    for (int i = 0; i < 1500; ++i) pub.put(channels[static_cast<std::size_t>(i)], i);
    long sum = 0;
    int got = 0;
    while (got < 1500) {
        auto m = sub.get(5s);
        if (!m) break;
        sum += m->as<int>();
        ++got;
    }
    CHECK(got == 1500);
    CHECK(sum == 1499L * 1500L / 2);
}

TEST_CASE("NaN and Infinity travel as Python writes them and arrive as doubles", "[bus][limits]") {
    const Bus bus("ipc://" + ipc_path("nan"));
    auto pub = bus.publish();
    pub.start();
    auto sub = bus.subscribe("n");
    sub.wait_ready(5s);
    pub.put("n", Json{{"v", std::numeric_limits<double>::quiet_NaN()}});
    pub.put("n", Json{{"v", std::numeric_limits<double>::infinity()}});
    pub.put("n", Json{{"v", -std::numeric_limits<double>::infinity()}});
    auto a = sub.get(5s);
    auto b = sub.get(5s);
    auto c = sub.get(5s);
    REQUIRE((a && b && c));
    CHECK(std::isnan(a->message["v"].get<double>()));
    CHECK(b->message["v"].get<double>() == std::numeric_limits<double>::infinity());
    CHECK(c->message["v"].get<double>() == -std::numeric_limits<double>::infinity());
    CHECK(sub.stats().dropped() == 0);
}

TEST_CASE("the handshake subscription reaches the publisher after every channel's, and is valid UTF-8",
          "[bus][limits]") {
    // A subscriber made before its publisher exists: ZeroMQ replays its
    // subscriptions on connection in byte order, not in the order made.
    const std::string address = "ipc://" + ipc_path("order");
    std::vector<std::string> channels = {"zz", "a", "\xc3\xa9t\xc3\xa9", "~", "\xf0\x9f\x98\x80"};
    auto sub = Bus(address).subscribe(channels);
    zmq::context_t ctx;
    zmq::socket_t raw(ctx, zmq::socket_type::xpub);
    raw.set(zmq::sockopt::rcvtimeo, 5000);
    raw.bind(address);
    std::vector<std::string> seen;
    zmq::message_t msg;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (seen.size() < channels.size() + 1 && std::chrono::steady_clock::now() < deadline) {
        // The subscriber's socket attaches the connection inside its own calls.
        (void)sub.get();
        if (raw.recv(msg, zmq::recv_flags::dontwait)) seen.push_back(msg.to_string());
    }
    REQUIRE(seen.size() == channels.size() + 1);
    const std::string ready = seen.back();
    CHECK(ready.substr(0, 18) == std::string("\x01\xf4\x8f\xbf\xbf") + "coproc-ready:");
    for (std::size_t i = 0; i + 1 < seen.size(); ++i) CHECK(seen[i].find("coproc-ready:") == std::string::npos);
}

TEST_CASE("a stopped subscriber costs the publisher bounded memory while 10^6 messages are put", "[bus][limits]") {
    using M = coproc::MultiMessenger<std::string>;
    // Forked before the publisher's threads exist; learns the endpoint by message.
    coproc::WorkerResource<M> stalled([](M& m) {
        coproc::test::child_watchdog(120);
        auto sub = Bus(m.receive_blocking(10s)).subscribe("load");
        sub.wait_ready(10s);
        m.send_norequest("ready");
        (void)m.receive_blocking();  // never comes: the host SIGSTOPs us here
    });
    auto pub = Bus("tcp://127.0.0.1:*").publish();
    pub.start();
    stalled.messenger().send_norequest(pub.endpoint());
    REQUIRE(stalled.messenger().receive_blocking(10s) == "ready");
    REQUIRE(::kill(static_cast<pid_t>(stalled.pid()), SIGSTOP) == 0);

    const double before = rss_mb();
    const std::string text(200, 'x');  // ~200 MB of frames in all: unbounded, all of it would stay queued
    constexpr std::uint64_t count = 1'000'000;
    for (std::uint64_t i = 0; i < count; ++i) pub.put("load", text);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (pub.sent() < count && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    REQUIRE(pub.sent() == count);
    const double growth = rss_mb() - before;
    INFO("publisher RSS growth: " << growth << " MB");
    // The bound: 100,000 queued frames of ~250 bytes, plus the sockets'
    // buffers (about 30 MB). Unbounded (both marks 0), the same run grows by
    // over 350 MB. ASan pads every block and keeps freed ones in quarantine
    // (tests/meson.build makes it 16 MB for this test): about 70 MB bounded,
    // far more unbounded.
#if defined(__SANITIZE_ADDRESS__)
    CHECK(growth < 160.0);
#else
    CHECK(growth < 100.0);
#endif
    WARN("publisher RSS growth with a stopped subscriber: " << growth << " MB");
    ::kill(static_cast<pid_t>(stalled.pid()), SIGCONT);
    (void)stalled.kill();
}
