// Bus throughput, small messages publisher -> subscriber, over ipc:// and
// tcp://, against raw cppzmq PUB/SUB sending the same frames, in one run.
// The raw baseline sends a pre-built frame; coproc serialises the JSON
// (Python's format), queues it to its sending thread, and the subscriber
// validates and parses it: the ratio is the price of the bus's work.
#include <benchmark/benchmark.h>

#include <coproc/bus.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <string>
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

void BM_raw_pubsub(benchmark::State& state, const std::string& kind) {
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
    const double cpu = process_cpu_ns();
    for (auto _ : state) {
        std::thread sender([&] {
            for (int i = 0; i < batch; ++i) pub.send(zmq::buffer(frame), zmq::send_flags::none);
        });
        zmq::message_t msg;
        for (int i = 0; i < batch; ++i) (void)sub.recv(msg);
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

}  // namespace

BENCHMARK_CAPTURE(BM_raw_pubsub, ipc, std::string("ipc"))->UseRealTime();
BENCHMARK_CAPTURE(BM_coproc_bus, ipc, std::string("ipc"))->UseRealTime();
BENCHMARK_CAPTURE(BM_raw_pubsub, tcp, std::string("tcp"))->UseRealTime();
BENCHMARK_CAPTURE(BM_coproc_bus, tcp, std::string("tcp"))->UseRealTime();

BENCHMARK_MAIN();
