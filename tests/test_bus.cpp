// The bus: shellbot's own cases, exact matching, fan-out, no loss after
// ready, separate processes over tcp, bad input, and Python peers both ways.
#include <catch2/catch.hpp>

#include <coproc/bus.hpp>
#include <coproc/worker_resource.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Bus;
using coproc::Json;

namespace {

std::string ipc_address(const std::string& name) {
    return "ipc:///tmp/coproc-test-" + std::to_string(::getpid()) + "-" + name;
}

// Everything a subscriber gets within `timeout` per message, until `count`.
std::vector<coproc::BusMessage> receive(coproc::Subscriber& sub, std::size_t count,
                                        std::chrono::milliseconds timeout = 5s) {
    std::vector<coproc::BusMessage> out;
    while (out.size() < count) {
        auto m = sub.get(timeout);
        if (!m) break;
        out.push_back(std::move(*m));
    }
    return out;
}

}  // namespace

TEST_CASE("shellbot: default address, and a missing address restored", "[bus]") {
    CHECK(Bus::default_address == "tcp://127.0.0.1:5555");
    CHECK(Bus().address() == "tcp://127.0.0.1:5555");
    CHECK(Bus("").address() == "tcp://127.0.0.1:5555");
    CHECK(Bus("ipc:///tmp/x").address() == "ipc:///tmp/x");
}

TEST_CASE("shellbot: subscribe rejects empty lists; put validates channels and messages", "[bus]") {
    Bus bus(ipc_address("validate"));
    CHECK_THROWS_AS(bus.subscribe(std::vector<std::string>{}), std::invalid_argument);
    CHECK_THROWS_AS(bus.subscribe("has space"), std::invalid_argument);
    CHECK_NOTHROW(bus.subscribe("channel"));
    CHECK_NOTHROW(bus.subscribe(""));  // everything, as in shellbot
    auto pub = bus.publish();
    CHECK_THROWS_AS(pub.put(std::vector<std::string>{}, "message"), std::invalid_argument);
    CHECK_THROWS_AS(pub.put("", "message"), std::invalid_argument);
    CHECK_THROWS_AS(pub.put("a b", "message"), std::invalid_argument);
    CHECK_THROWS_AS(pub.put_json("channel", Json()), std::invalid_argument);
    CHECK_THROWS_AS(pub.put("channel", ""), std::invalid_argument);
    CHECK_THROWS_AS(pub.put_json("channel", Json::object()), std::invalid_argument);
    CHECK_THROWS_AS(pub.put_json("channel", Json::array()), std::invalid_argument);
    CHECK_NOTHROW(pub.put("channel", 0));  // shellbot refused these; a count of 0 is a message
    CHECK_NOTHROW(pub.put("channel", false));
    CHECK_NOTHROW(pub.put("channel", "message"));
    CHECK_NOTHROW(pub.put(std::vector<std::string>{"channel"}, "message"));
}

TEST_CASE("JSON is written exactly as Python's json.dumps writes it", "[bus]") {
    using coproc::detail::python_json_dumps;
    CHECK(python_json_dumps(Json{{"hello", "world"}}) == R"({"hello": "world"})");
    Json ordered;
    ordered["z"] = 1;
    ordered["a"] = Json::array({1, 2.5, true, nullptr});
    CHECK(python_json_dumps(ordered) == R"({"z": 1, "a": [1, 2.5, true, null]})");  // insertion order kept
    CHECK(python_json_dumps(Json(1.0)) == "1.0");
    CHECK(python_json_dumps(Json(1e16)) == "1e+16");
    CHECK(python_json_dumps(Json(1e15)) == "1000000000000000.0");
    CHECK(python_json_dumps(Json(0.0001)) == "0.0001");
    CHECK(python_json_dumps(Json(0.00001)) == "1e-05");
    CHECK(python_json_dumps(Json(-0.0)) == "-0.0");
    CHECK(python_json_dumps(Json(123.456)) == "123.456");
    CHECK(python_json_dumps(Json(1.5e300)) == "1.5e+300");
    CHECK(python_json_dumps(Json(std::numeric_limits<double>::quiet_NaN())) == "NaN");
    CHECK(python_json_dumps(Json("h\u00e9llo \U0001F600 \"q\" \\ \n\t\x01\x7f/")) ==
          R"("h\u00e9llo \ud83d\ude00 \"q\" \\ \n\t\u0001\u007f/")");
    CHECK(python_json_dumps(Json::array()) == "[]");
    CHECK(python_json_dumps(Json::object()) == "{}");
    CHECK(python_json_dumps(Json(std::numeric_limits<std::int64_t>::min())) == "-9223372036854775808");
    CHECK(python_json_dumps(Json(std::numeric_limits<std::uint64_t>::max())) == "18446744073709551615");
    CHECK(python_json_dumps(Json{{"n", -7}, {"m", 0u}}) == R"({"n": -7, "m": 0})");
}

TEST_CASE("exact framing on the wire: channel_C {\"hello\": \"world\"}", "[bus]") {
    const std::string address = ipc_address("framing");
    auto pub = Bus(address).publish();
    pub.start();
    zmq::context_t ctx;
    zmq::socket_t raw(ctx, zmq::socket_type::sub);
    raw.set(zmq::sockopt::subscribe, "");
    raw.set(zmq::sockopt::rcvtimeo, 5000);
    raw.connect(address);
    pub.wait_for_subscribers(1, 5s);
    pub.put({"channel_A"}, "hello");
    pub.put("channel_B", "world");
    pub.put("channel_C", Json{{"hello", "world"}});
    std::vector<std::string> frames;
    zmq::message_t msg;
    while (frames.size() < 3 && raw.recv(msg)) frames.push_back(msg.to_string());
    CHECK(frames ==
          std::vector<std::string>{R"(channel_A "hello")", R"(channel_B "world")", R"(channel_C {"hello": "world"})"});
    pub.stop();
    CHECK(pub.sent() == 3);
}

TEST_CASE("exact channels, fan-out to several channels, and the channel delivered", "[bus]") {
    Bus bus(ipc_address("exact"));
    auto pub = bus.publish();
    pub.start();
    auto only_a = bus.subscribe("a");
    auto both = bus.subscribe({"a", "b"});
    only_a.wait_ready(5s);
    both.wait_ready(5s);
    pub.put("ab", "not for a");
    pub.put({"a", "b"}, "fan-out");
    pub.put("a", "last");
    const auto a = receive(only_a, 2);
    REQUIRE(a.size() == 2);
    CHECK(a[0].channel == "a");
    CHECK(a[0].as<std::string>() == "fan-out");
    CHECK(a[1].as<std::string>() == "last");
    CHECK_FALSE(only_a.get(50ms).has_value());  // "ab" never arrived
    const auto b = receive(both, 3);
    REQUIRE(b.size() == 3);
    CHECK(b[0].channel == "a");
    CHECK(b[1].channel == "b");  // one frame per channel: both copies arrive
    CHECK(b[2].as<std::string>() == "last");
}

TEST_CASE("shellbot: stop by switch and by poison pill deliver everything put before", "[bus]") {
    Bus bus(ipc_address("stop"));
    auto sub = bus.subscribe("n");
    SECTION("switch: stop()") {
        auto pub = bus.publish();
        pub.start();
        sub.wait_ready(5s);
        for (int i = 0; i < 500; ++i) pub.put("n", Json{{"counter", i}});
        pub.stop();
        CHECK_FALSE(pub.running());
        CHECK(pub.sent() == 500);
        CHECK_THROWS_AS(pub.put("n", 1), coproc::Error);
    }
    SECTION("poison pill: request_stop()") {
        auto pub = bus.publish();
        pub.start();
        sub.wait_ready(5s);
        for (int i = 0; i < 500; ++i) pub.put("n", Json{{"counter", i}});
        pub.request_stop();  // returns at once; the thread sends the 500, then ends
        CHECK_THROWS_AS(pub.put("n", 1), coproc::Error);
        pub.stop();
        CHECK(pub.sent() == 500);
    }
    const auto got = receive(sub, 500);
    REQUIRE(got.size() == 500);
    for (int i = 0; i < 500; ++i) CHECK(got[static_cast<std::size_t>(i)].message["counter"] == i);
}

TEST_CASE("10,000 messages to 4 subscribers after ready: none lost", "[bus]") {
    Bus bus(ipc_address("many"));
    auto pub = bus.publish();
    pub.start();
    std::vector<coproc::Subscriber> subs;
    for (int i = 0; i < 4; ++i) subs.push_back(bus.subscribe("load"));
    for (auto& s : subs) s.wait_ready(5s);
    for (int i = 0; i < 10'000; ++i) pub.put("load", i + 1);
    for (auto& s : subs) {
        const auto got = receive(s, 10'000);
        REQUIRE(got.size() == 10'000);
        CHECK(got.back().as<int>() == 10'000);
        CHECK(s.stats().dropped() == 0);
    }
}

TEST_CASE("put() from several threads at once: every message arrives, each thread's in order", "[bus]") {
    Bus bus(ipc_address("threads"));
    auto pub = bus.publish();
    pub.start();
    auto sub = bus.subscribe({"t", "all"});
    sub.wait_ready(5s);
    constexpr int threads = 4;
    constexpr int each = 2'500;
    std::vector<std::thread> putters;
    for (int t = 0; t < threads; ++t) {
        putters.emplace_back([&pub, t] {
            // Alternate one channel and two (two frames for one put) so
            // puts of different sizes interleave in the publisher's queue.
            for (int i = 0; i < each; ++i) {
                const Json m{{"thread", t}, {"i", i}};
                if (i % 2 == 0)
                    pub.put("t", m);
                else
                    pub.put({"t", "all"}, m);
            }
        });
    }
    for (auto& p : putters) p.join();
    constexpr std::size_t frames = threads * (each / 2 + 2 * (each / 2));
    const auto got = receive(sub, frames);
    REQUIRE(got.size() == frames);
    std::vector<int> next_t(threads, 0);
    std::vector<int> next_all(threads, 1);
    for (const auto& m : got) {
        const int t = m.message["thread"].get<int>();
        const int i = m.message["i"].get<int>();
        REQUIRE((t >= 0 && t < threads));
        auto& next = m.channel == "t" ? next_t[static_cast<std::size_t>(t)] : next_all[static_cast<std::size_t>(t)];
        CHECK(i == next);
        next = i + (m.channel == "t" ? 1 : 2);
    }
    CHECK(sub.stats().dropped() == 0);
    pub.stop();
    CHECK(pub.sent() == frames);
}

TEST_CASE("publisher and subscribers in separate processes over tcp://127.0.0.1", "[bus]") {
    // Workers are forked before the publisher starts its threads (README,
    // Gotchas: forking while other threads run can inherit a held lock, e.g.
    // the allocator's); they learn the endpoint through their messenger.
    using M = coproc::MultiMessenger<std::string>;
    std::vector<coproc::WorkerResource<M>> workers;
    for (int w = 0; w < 3; ++w)
        workers.emplace_back([](M& m) {
            coproc::test::child_watchdog();
            auto sub = Bus(m.receive_blocking(10s)).subscribe("tick");
            sub.wait_ready(10s);
            m.send_norequest("ready");
            int sum = 0;
            for (int i = 0; i < 1000; ++i) {
                auto msg = sub.get(10s);
                if (!msg) break;
                sum += msg->as<int>();
            }
            m.send_norequest(std::to_string(sum));
        });
    auto pub = Bus("tcp://127.0.0.1:*").publish();
    pub.start();
    for (auto& w : workers) w.messenger().send_norequest(pub.endpoint());
    for (auto& w : workers) REQUIRE(w.messenger().receive_blocking(10s) == "ready");
    for (int i = 1; i <= 1000; ++i) pub.put("tick", i);
    for (auto& w : workers) CHECK(w.messenger().receive_blocking(20s) == "500500");
}

TEST_CASE("bad frames are dropped and counted, never thrown", "[bus]") {
    const std::string address = ipc_address("bad");
    zmq::context_t ctx;
    zmq::socket_t raw(ctx, zmq::socket_type::xpub);
    raw.set(zmq::sockopt::rcvtimeo, 5000);
    raw.bind(address);
    coproc::BusOptions options;
    options.max_message_size = 1024;
    auto sub = Bus(address, options).subscribe("");
    zmq::message_t subscription;
    REQUIRE(raw.recv(subscription));  // the subscriber is connected
    for (const std::string& frame : {std::string("nospace"), std::string("ch \xff\xfe"), std::string("ch {bad json"),
                                     std::string("ch ") + std::string(2000, 'x'), std::string("ch \"good\"")})
        raw.send(zmq::buffer(frame));
    auto good = sub.get(5s);
    REQUIRE(good.has_value());
    CHECK(good->as<std::string>() == "good");
    const auto& st = sub.stats();
    CHECK(st.received == 5);
    CHECK(st.delivered == 1);
    CHECK(st.dropped_no_space == 1);
    CHECK(st.dropped_bad_utf8 == 1);
    CHECK(st.dropped_bad_json == 1);
    CHECK(st.dropped_oversized == 1);
}

TEST_CASE("a plain PUB cannot confirm readiness: wait_ready times out", "[bus]") {
    const std::string address = ipc_address("plain");
    zmq::context_t ctx;
    zmq::socket_t raw(ctx, zmq::socket_type::pub);
    raw.bind(address);
    auto sub = Bus(address).subscribe("x");
    CHECK_THROWS_AS(sub.wait_ready(100ms), coproc::Timeout);
}

// ---- Python peers (python3-zmq from Debian, plain pyzmq).

namespace {
const char* const python = "/usr/bin/python3";

std::string write_script(const std::string& name, const std::string& text) {
    const std::string path = "/tmp/coproc-test-" + std::to_string(::getpid()) + "-" + name + ".py";
    std::ofstream(path) << text;
    return path;
}
}  // namespace

TEST_CASE("a Python subscriber receives ours byte for byte, non-ASCII included", "[bus][python]") {
    auto pub = Bus("tcp://127.0.0.1:*").publish();
    pub.start();
    // The Python side checks that every frame is exactly what json.dumps
    // writes for the decoded value, then prints the decoded values.
    const std::string script = write_script("sub", R"PY(
import json, sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.setsockopt_string(zmq.SUBSCRIBE, "chan")
s.connect(sys.argv[1])
for _ in range(3):
    frame = s.recv().decode("utf-8")
    channel, text = frame.split(" ", 1)
    value = json.loads(text)
    print(channel, "exact" if json.dumps(value) == text else "DIFFERENT", json.dumps(value, ensure_ascii=False), flush=True)
)PY");
    FILE* out = ::popen((std::string(python) + " " + script + " " + pub.endpoint()).c_str(), "r");
    REQUIRE(out != nullptr);
    pub.wait_for_subscribers(1, 10s);
    pub.put("chan", Json{{"text", "h\u00e9llo w\u00f6rld \u2603 \U0001F600"}, {"n", 1.5}});
    pub.put("chan", Json::array({1, "\u00fc", nullptr, false}));
    pub.put("chan", "plain");
    std::string lines;
    char buf[512];
    while (std::fgets(buf, sizeof buf, out) != nullptr) lines += buf;
    CHECK(::pclose(out) == 0);
    CHECK(lines ==
          "chan exact {\"text\": \"h\u00e9llo w\u00f6rld \u2603 \U0001F600\", \"n\": 1.5}\n"
          "chan exact [1, \"\u00fc\", null, false]\n"
          "chan exact \"plain\"\n");
}

TEST_CASE("a Python publisher reaches our subscriber, non-ASCII included", "[bus][python]") {
    const std::string address = ipc_address("pypub");
    // The Python publisher repeats its message until told to stop on stdin
    // (a plain PUB cannot know when we are connected).
    const std::string script = write_script("pub", R"PY(
import json, select, sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUB)
s.bind(sys.argv[1])
frame = "news " + json.dumps({"headline": "Caf\u00e9 \u2615 \U0001F600", "id": 7})
while not select.select([sys.stdin], [], [], 0.01)[0]:
    s.send_string(frame)
)PY");
    auto sub = Bus(address).subscribe("news");
    FILE* in = ::popen((std::string(python) + " " + script + " " + address).c_str(), "w");
    REQUIRE(in != nullptr);
    auto m = sub.get(10s);
    std::fputs("stop\n", in);
    CHECK(::pclose(in) == 0);
    REQUIRE(m.has_value());
    CHECK(m->channel == "news");
    CHECK(m->message["headline"] == "Caf\u00e9 \u2615 \U0001F600");
    CHECK(m->message["id"] == 7);
}
