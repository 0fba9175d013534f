// Bus throughput, small messages publisher -> subscriber, over ipc:// and
// tcp://, against raw cppzmq PUB/SUB sending the same frames, in one run.
// The raw baseline sends a pre-built frame; coproc serialises the JSON
// (Python's format), queues it to its sending thread, and the subscriber
// validates and parses it: the ratio is the price of the bus's work.
// Two references split that price: raw cppzmq doing only coproc's JSON work
// (no bus machinery), and raw cppzmq with nlohmann's dump() and parse(), the
// code a user would write instead of the bus.
#include <benchmark/benchmark.h>

#include <coproc/bus.hpp>
#include <coproc/coproc.hpp>
#include "json_text.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <zmq.hpp>

namespace {

constexpr int batch = 10'000;

// CPU time of the whole process (every thread: ours and ZeroMQ's I/O
// threads), in ns. Per message it is steadier than wall-clock throughput on a
// shared machine, and on 2 cores it is what limits throughput.
double process_cpu_ns() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    const auto ns = [](const timeval& t) { return double(t.tv_sec) * 1e9 + double(t.tv_usec) * 1e3; };
    return ns(u.ru_utime) + ns(u.ru_stime);
}

void report_cpu(benchmark::State& state, double cpu_before) {
    state.counters["cpu_ns_per_msg"] = (process_cpu_ns() - cpu_before) / (double(state.iterations()) * batch);
}

std::string endpoint(const std::string& kind) {
    static int n = 0;
    if (kind == "ipc") return "ipc:///tmp/coproc-bench-bus-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
    return "tcp://127.0.0.1:" + std::to_string(26000 + (::getpid() % 2000) * 10 + n++ % 10);
}

// What the raw baselines do with each message.
enum class RawWork {
    none,         // send a pre-built frame, receive the bytes and never look at them
    nlohmann,     // what a cppzmq user writes: dump() per send, parse() per receive
    coproc_json,  // coproc's JSON writer and parser, and nothing else of the bus
};

void BM_raw_pubsub(benchmark::State& state, const std::string& kind, RawWork work) {
    const std::string ep = endpoint(kind);
    zmq::context_t ctx;
    zmq::socket_t pub(ctx, zmq::socket_type::xpub);
    pub.set(zmq::sockopt::sndhwm, 0);
    pub.bind(ep);
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::rcvhwm, 0);
    sub.set(zmq::sockopt::subscribe, "tick ");
    sub.connect(ep);
    zmq::message_t hello;
    (void)pub.recv(hello);  // the subscription arrived
    const std::string frame = "tick {\"n\": 12345}";
    const coproc::Json message{{"n", 12345}};
    const double cpu = process_cpu_ns();
    for (auto _ : state) {
        std::thread sender([&] {
            std::string text;
            for (int i = 0; i < batch; ++i) {
                if (work == RawWork::none) {
                    pub.send(zmq::buffer(frame), zmq::send_flags::none);
                    continue;
                }
                text.assign("tick ");
                if (work == RawWork::nlohmann)
                    text += message.dump();
                else
                    coproc::detail::append_python_json(text, message);
                pub.send(zmq::buffer(text), zmq::send_flags::none);
            }
        });
        zmq::message_t msg;
        for (int i = 0; i < batch; ++i) {
            (void)sub.recv(msg);
            if (work == RawWork::none) continue;
            const std::string_view got = msg.to_string_view();
            const auto space = got.find(' ');
            std::optional<coproc::BusMessage> m(std::in_place);
            m->channel.assign(got.substr(0, space));
            if (work == RawWork::nlohmann)
                m->message = coproc::Json::parse(got.substr(space + 1));
            else if (!coproc::detail::parse_json(got.substr(space + 1), m->message))
                std::abort();
            benchmark::DoNotOptimize(m);
        }
        sender.join();
    }
    report_cpu(state, cpu);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}

void BM_coproc_bus(benchmark::State& state, const std::string& kind) {
    coproc::Bus bus(endpoint(kind));
    auto pub = bus.publish();
    pub.start();
    auto sub = bus.subscribe("tick");
    sub.wait_ready(std::chrono::seconds(10));
    const coproc::Json message{{"n", 12345}};
    const double cpu = process_cpu_ns();
    for (auto _ : state) {
        // Same shape as the raw baseline: a sending thread, a receiving one.
        std::thread sender([&] {
            for (int i = 0; i < batch; ++i) pub.put("tick", message);
        });
        for (int i = 0; i < batch; ++i) benchmark::DoNotOptimize(sub.get(true));
        sender.join();
    }
    report_cpu(state, cpu);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}

// ----------------------------------------------------------------------------
// Across processes, the bus's deployment: the publisher is a worker process
// (forked by coproc::WorkerResource), the subscriber is this one, and each
// side has its own ZeroMQ context and I/O thread (in one process, the raw
// baseline above shares one I/O thread between both ends). The worker sends
// `n` messages per int64 `n` it is sent; 0 ends it, and it answers with the
// CPU time it used since it reported ready.
using Control = coproc::PriorityMessenger<std::int64_t>;
constexpr auto setup_timeout = std::chrono::seconds(10);

std::int64_t process_cpu_since(double start) { return static_cast<std::int64_t>(process_cpu_ns() - start); }

void raw_publisher(Control& control, const std::string& ep) {
    zmq::context_t ctx;
    zmq::socket_t pub(ctx, zmq::socket_type::xpub);
    pub.set(zmq::sockopt::sndhwm, 0);
    pub.set(zmq::sockopt::rcvtimeo, 10'000);
    pub.bind(ep);
    zmq::message_t hello;
    if (!pub.recv(hello)) return;  // no subscriber: the host times out
    const double cpu = process_cpu_ns();
    control.send_norequest(0);  // ready
    const std::string frame = "tick {\"n\": 12345}";
    while (const std::int64_t n = control.receive_blocking()) {
        for (std::int64_t i = 0; i < n; ++i) pub.send(zmq::buffer(frame), zmq::send_flags::none);
    }
    control.send_norequest(process_cpu_since(cpu));
}

void coproc_publisher(Control& control, const std::string& ep) {
    coproc::Bus bus(ep);
    auto pub = bus.publish();
    pub.start();
    pub.wait_for_subscribers(2, setup_timeout);  // "tick" and the readiness handshake
    const double cpu = process_cpu_ns();
    control.send_norequest(0);  // ready
    const coproc::Json message{{"n", 12345}};
    while (const std::int64_t n = control.receive_blocking()) {
        for (std::int64_t i = 0; i < n; ++i) pub.put("tick", message);
    }
    pub.stop();
    control.send_norequest(process_cpu_since(cpu));
}

// Ends the worker and adds its CPU time to ours for the per-message figure.
void finish_xproc(benchmark::State& state, coproc::WorkerResource<Control>& w, double cpu_before) {
    const double ours = process_cpu_ns() - cpu_before;
    w.messenger().send_norequest(0);
    const auto theirs = static_cast<double>(w.messenger().receive_blocking(setup_timeout));
    (void)w.join(setup_timeout);
    const double messages = double(state.iterations()) * batch;
    state.counters["cpu_ns_per_msg"] = (ours + theirs) / messages;
    state.counters["sub_cpu_ns_per_msg"] = ours / messages;  // the subscribing process alone
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}

void BM_raw_pubsub_xproc(benchmark::State& state, const std::string& kind) {
    const std::string ep = endpoint(kind);
    coproc::WorkerResource<Control> w(raw_publisher, ep);
    zmq::context_t ctx;
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::rcvhwm, 0);
    sub.set(zmq::sockopt::rcvtimeo, 10'000);
    sub.set(zmq::sockopt::subscribe, "tick ");
    sub.connect(ep);
    (void)w.messenger().receive_blocking(setup_timeout);  // its XPUB saw our subscription
    const double cpu = process_cpu_ns();
    for (auto _ : state) {
        w.messenger().send_norequest(batch);
        zmq::message_t msg;
        for (int i = 0; i < batch; ++i) {
            if (!sub.recv(msg)) std::abort();  // 10 s without a message: a bug, not a figure
        }
    }
    finish_xproc(state, w, cpu);
}

void BM_coproc_bus_xproc(benchmark::State& state, const std::string& kind) {
    const std::string ep = endpoint(kind);
    coproc::WorkerResource<Control> w(coproc_publisher, ep);
    auto sub = coproc::Bus(ep).subscribe("tick");
    sub.wait_ready(setup_timeout);
    (void)w.messenger().receive_blocking(setup_timeout);
    const double cpu = process_cpu_ns();
    for (auto _ : state) {
        w.messenger().send_norequest(batch);
        for (int i = 0; i < batch; ++i) {
            auto m = sub.get(std::chrono::seconds(10));
            if (!m) std::abort();
            benchmark::DoNotOptimize(m);
        }
    }
    finish_xproc(state, w, cpu);
}

}  // namespace

BENCHMARK_CAPTURE(BM_raw_pubsub_xproc, ipc, std::string("ipc"))->UseRealTime();
BENCHMARK_CAPTURE(BM_coproc_bus_xproc, ipc, std::string("ipc"))->UseRealTime();
BENCHMARK_CAPTURE(BM_raw_pubsub_xproc, tcp, std::string("tcp"))->UseRealTime();
BENCHMARK_CAPTURE(BM_coproc_bus_xproc, tcp, std::string("tcp"))->UseRealTime();
BENCHMARK_CAPTURE(BM_raw_pubsub, ipc, std::string("ipc"), RawWork::none)->UseRealTime();
BENCHMARK_CAPTURE(BM_coproc_bus, ipc, std::string("ipc"))->UseRealTime();
BENCHMARK_CAPTURE(BM_raw_pubsub, tcp, std::string("tcp"), RawWork::none)->UseRealTime();
BENCHMARK_CAPTURE(BM_coproc_bus, tcp, std::string("tcp"))->UseRealTime();
// References: where the bus's time goes, and what the hand-written equivalent costs.
BENCHMARK_CAPTURE(BM_raw_pubsub, ipc_coproc_json, std::string("ipc"), RawWork::coproc_json)->UseRealTime();
BENCHMARK_CAPTURE(BM_raw_pubsub, ipc_nlohmann, std::string("ipc"), RawWork::nlohmann)->UseRealTime();

BENCHMARK_MAIN();
