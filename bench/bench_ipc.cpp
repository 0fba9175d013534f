// coproc against the raw socketpair limit and its peers, in one run.
//
// Every process is pinned to one CPU (main() does it before any fork, and
// children inherit it): on a 2-core VM, cross-core wake-ups swing ±20 % and
// make ratios meaningless (bench/README.md). Each figure is reported per
// message or per byte so the driver (scripts/bench) can form ratios.
#include <benchmark/benchmark.h>

#include <coproc/coproc.hpp>

#include <sched.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <zmq.hpp>

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace {

using namespace std::chrono_literals;

constexpr std::size_t stream_batch = 10'000;  // messages per timed iteration in stream benchmarks
using Chunk = std::array<char, 64>;           // a 64-byte message

// ---------------------------------------------------------------- raw baselines

void write_full(int fd, const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) std::abort();
        c += w;
        n -= static_cast<std::size_t>(w);
    }
}
bool read_full(int fd, void* p, std::size_t n) {
    char* c = static_cast<char*>(p);
    while (n > 0) {
        const ssize_t r = ::read(fd, c, n);
        if (r <= 0) return false;
        c += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// A raw child on the other end of a socketpair, reaped at scope end.
template <class Body>
struct RawChild {
    int fd = -1;
    pid_t pid = -1;
    explicit RawChild(Body body) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
        std::fflush(nullptr);
        pid = ::fork();
        if (pid == 0) {
            ::close(sv[0]);
            body(sv[1]);
            ::_exit(0);
        }
        ::close(sv[1]);
        fd = sv[0];
    }
    ~RawChild() {
        ::close(fd);
        ::waitpid(pid, nullptr, 0);
    }
};

// Echoes 16-byte messages until EOF.
void raw_echo16(int fd) {
    char buf[16];
    while (read_full(fd, buf, sizeof buf)) write_full(fd, buf, sizeof buf);
}

// Runs `round_trip` once per iteration, timing each: p50 and p99 as counters.
template <class F>
void time_each(benchmark::State& state, F round_trip) {
    std::vector<double> samples;
    samples.reserve(1 << 20);
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        round_trip();
        samples.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(samples.begin(), samples.end());
    state.counters["p50_ns"] = samples[samples.size() / 2];
    state.counters["p99_ns"] = samples[samples.size() * 99 / 100];
}

void BM_raw_rtt(benchmark::State& state) {
    RawChild child(raw_echo16);
    char msg[16] = "0123456789abcde";
    for (auto _ : state) {
        write_full(child.fd, msg, sizeof msg);
        read_full(child.fd, msg, sizeof msg);
    }
    state.SetItemsProcessed(state.iterations());
}

// The receiver reads everything and acknowledges each batch of `stream_batch` 64-byte frames.
void raw_sink(int fd) {
    std::vector<char> buf(1 << 16);
    std::size_t got = 0;
    for (;;) {
        const ssize_t r = ::read(fd, buf.data(), buf.size());
        if (r <= 0) return;
        got += static_cast<std::size_t>(r);
        while (got >= stream_batch * 64) {
            got -= stream_batch * 64;
            write_full(fd, "k", 1);
        }
    }
}

void BM_raw_stream64_single(benchmark::State& state) {
    RawChild child(raw_sink);
    Chunk c{};
    char ack;
    for (auto _ : state) {
        for (std::size_t i = 0; i < stream_batch; ++i) write_full(child.fd, c.data(), c.size());
        read_full(child.fd, &ack, 1);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stream_batch));
}

void BM_raw_stream64_coalesced(benchmark::State& state) {
    RawChild child(raw_sink);
    std::vector<char> block(1024 * 64);  // 1,024 frames per 64 KiB write
    char ack;
    for (auto _ : state) {
        for (std::size_t sent = 0; sent < stream_batch;) {
            const std::size_t n = std::min<std::size_t>(1024, stream_batch - sent);
            write_full(child.fd, block.data(), n * 64);
            sent += n;
        }
        read_full(child.fd, &ack, 1);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stream_batch));
}

// Untimed round trips before a large-payload benchmark's loop. A new
// process's first big messages touch fresh memory (on this VM ~20 us per
// 4 KiB page: the first 16 MiB message costs ~80 ms, raw or coproc, and
// coproc's second ~45 ms, when glibc moves the receiver's 16 MiB strings
// from mmap to the heap). Counted in, they made the figure depend on how many
// iterations the harness chose (2-100+ ms per message between runs).
constexpr int large_warmup = 3;

void BM_raw_large(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    RawChild child([size](int fd) {
        std::vector<char> buf(size);
        while (read_full(fd, buf.data(), size)) write_full(fd, "k", 1);
    });
    std::vector<char> payload(size, 'x');
    char ack;
    for (int i = 0; i < large_warmup; ++i) {
        write_full(child.fd, payload.data(), size);
        read_full(child.fd, &ack, 1);
    }
    for (auto _ : state) {
        write_full(child.fd, payload.data(), size);
        read_full(child.fd, &ack, 1);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void BM_raw_fork_waitpid(benchmark::State& state) {
    for (auto _ : state) {
        std::fflush(nullptr);
        const pid_t pid = ::fork();
        if (pid == 0) ::_exit(0);
        ::waitpid(pid, nullptr, 0);
    }
    state.SetItemsProcessed(state.iterations());
}

// The raw ping-pong timing every round trip: the machine's own tail, against
// which coproc's p99 / median is read.
void BM_raw_rtt_latency(benchmark::State& state) {
    RawChild child(raw_echo16);
    char msg[16] = "0123456789abcde";
    time_each(state, [&] {
        write_full(child.fd, msg, sizeof msg);
        read_full(child.fd, msg, sizeof msg);
    });
}

// ---------------------------------------------------------------- coproc

template <class M>
void echo(M& m) {
    for (;;) m.send_reply(m.receive_blocking());
}

template <class M>
void BM_coproc_rtt(benchmark::State& state) {
    coproc::WorkerResource<M> w(&echo<M>);
    auto& m = w.messenger();
    const std::string msg = "0123456789abcdef";  // 16 bytes
    for (auto _ : state) {
        m.send_request(msg);
        benchmark::DoNotOptimize(m.receive_blocking());
    }
    state.SetItemsProcessed(state.iterations());
}

// Per-message round-trip latencies: median and 99th percentile as counters.
void BM_coproc_rtt_latency(benchmark::State& state) {
    using M = coproc::PriorityMessenger<std::string>;
    coproc::WorkerResource<M> w(&echo<M>);
    auto& m = w.messenger();
    const std::string msg = "0123456789abcdef";
    time_each(state, [&] {
        m.send_request(msg);
        benchmark::DoNotOptimize(m.receive_blocking());
    });
}

// Counts incoming 64-byte messages and acknowledges each batch on channel 1.
// receive_available_blocking: one recv per wake-up, as the raw sink's read.
void chunk_sink(coproc::MultiMessenger<Chunk>& m) {
    std::size_t got = 0;
    for (;;) {
        got += m.receive_available_blocking().size();
        while (got >= stream_batch) {
            got -= stream_batch;
            m.send_norequest(Chunk{}, 1);
        }
    }
}

void BM_coproc_stream64_single(benchmark::State& state) {
    coproc::WorkerResource<coproc::MultiMessenger<Chunk>> w(chunk_sink);
    auto& m = w.messenger();
    const Chunk c{};
    for (auto _ : state) {
        for (std::size_t i = 0; i < stream_batch; ++i) m.send_norequest(c);
        benchmark::DoNotOptimize(m.receive_blocking(1));
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stream_batch));
}

void BM_coproc_stream64_batch(benchmark::State& state) {
    coproc::WorkerResource<coproc::MultiMessenger<Chunk>> w(chunk_sink);
    auto& m = w.messenger();
    const std::vector<Chunk> batch(1000);
    for (auto _ : state) {
        for (std::size_t sent = 0; sent < stream_batch; sent += batch.size()) m.send_norequest_multiple(batch);
        benchmark::DoNotOptimize(m.receive_blocking(1));
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stream_batch));
}

void large_sink(coproc::PriorityMessenger<std::string>& m) {
    for (;;) {
        const std::string s = m.receive_blocking();
        m.send_reply(std::string(1, s.empty() ? 'e' : 'k'));
    }
}

// large_warmup untimed request/reply round trips of `payload`.
template <class M, class P>
void warm_up(M& m, const P& payload) {
    for (int i = 0; i < large_warmup; ++i) {
        m.send_request(payload);
        (void)m.receive_blocking();
    }
}

void BM_coproc_large(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(large_sink);
    auto& m = w.messenger();
    const std::string payload(size, 'x');
    warm_up(m, payload);
    for (auto _ : state) {
        m.send_request(payload);
        benchmark::DoNotOptimize(m.receive_blocking());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

// The same with Blob messages: the receiver gets a view of the sender's
// shared-memory slot (no copy out), and the sender's one copy is into the slot.
void blob_sink(coproc::PriorityMessenger<coproc::Blob>& m) {
    for (;;) {
        const coproc::Blob b = m.receive_blocking();
        m.send_reply(coproc::Blob::copy_of(b.empty() ? "e" : "k"));
    }
}

void BM_coproc_large_blob(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    coproc::WorkerResource<coproc::PriorityMessenger<coproc::Blob>> w(blob_sink);
    auto& m = w.messenger();
    const coproc::Blob payload = coproc::Blob::copy_of(std::string(size, 'x'));
    warm_up(m, payload);
    for (auto _ : state) {
        m.send_request(payload);
        benchmark::DoNotOptimize(m.receive_blocking());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void BM_coproc_spawn(benchmark::State& state) {
    for (auto _ : state) {
        coproc::WorkerResource<coproc::MultiMessenger<int>> w([](coproc::MultiMessenger<int>&) {});
        benchmark::DoNotOptimize(w.join());
    }
    state.SetItemsProcessed(state.iterations());
}

// Spawn mode: a worker that is a program of its own (bench_worker, next to
// this one), against posix_spawn + waitpid of the same program told to exit.
std::string bench_worker_path() {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) std::abort();
    std::string path(self, static_cast<std::size_t>(n));
    return path.substr(0, path.rfind('/') + 1) + "bench_worker";
}

void BM_raw_posix_spawn(benchmark::State& state) {
    const std::string path = bench_worker_path();
    char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>("exit"), nullptr};
    for (auto _ : state) {
        pid_t pid = -1;
        if (::posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv, environ) != 0) std::abort();
        ::waitpid(pid, nullptr, 0);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_coproc_spawn_exec(benchmark::State& state) {
    const coproc::Executable program{bench_worker_path(), {}};
    for (auto _ : state) {
        coproc::WorkerResource<coproc::MultiMessenger<int>> w(program);
        benchmark::DoNotOptimize(w.join());
    }
    state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------- peers

namespace bip = boost::interprocess;

struct QueuePair {
    std::string to, from;
    QueuePair()
        : to("coproc_bench_to_" + std::to_string(::getpid())), from("coproc_bench_from_" + std::to_string(::getpid())) {
        bip::message_queue::remove(to.c_str());
        bip::message_queue::remove(from.c_str());
    }
    ~QueuePair() {
        bip::message_queue::remove(to.c_str());
        bip::message_queue::remove(from.c_str());
    }
};

void BM_boost_mq_rtt(benchmark::State& state) {
    QueuePair names;
    bip::message_queue to(bip::create_only, names.to.c_str(), 64, 16);
    bip::message_queue from(bip::create_only, names.from.c_str(), 64, 16);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        bip::message_queue in(bip::open_only, names.to.c_str());
        bip::message_queue out(bip::open_only, names.from.c_str());
        char buf[16];
        for (;;) {
            std::size_t got = 0;
            unsigned prio = 0;
            in.receive(buf, sizeof buf, got, prio);
            if (got == 1) ::_exit(0);
            out.send(buf, got, 0);
        }
    }
    char msg[16] = "0123456789abcde";
    for (auto _ : state) {
        std::size_t got = 0;
        unsigned prio = 0;
        to.send(msg, sizeof msg, 0);
        from.receive(msg, sizeof msg, got, prio);
    }
    to.send("q", 1, 0);
    ::waitpid(pid, nullptr, 0);
    state.SetItemsProcessed(state.iterations());
}

void BM_boost_mq_stream64(benchmark::State& state) {
    QueuePair names;
    bip::message_queue to(bip::create_only, names.to.c_str(), 1024, 64);
    bip::message_queue from(bip::create_only, names.from.c_str(), 16, 1);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        bip::message_queue in(bip::open_only, names.to.c_str());
        bip::message_queue out(bip::open_only, names.from.c_str());
        char buf[64];
        std::size_t count = 0;
        for (;;) {
            std::size_t got = 0;
            unsigned prio = 0;
            in.receive(buf, sizeof buf, got, prio);
            if (got == 1) ::_exit(0);
            if (++count == stream_batch) {
                count = 0;
                out.send("k", 1, 0);
            }
        }
    }
    const Chunk c{};
    for (auto _ : state) {
        for (std::size_t i = 0; i < stream_batch; ++i) to.send(c.data(), c.size(), 0);
        char ack;
        std::size_t got = 0;
        unsigned prio = 0;
        from.receive(&ack, 1, got, prio);
    }
    to.send("q", 1, 0);
    ::waitpid(pid, nullptr, 0);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stream_batch));
}

std::string zmq_endpoint() { return "ipc:///tmp/coproc-bench-" + std::to_string(::getpid()); }

// A forked ZeroMQ PAIR peer at `ep` that answers every message with the
// message itself (echo) or with one byte; a 1-byte message ends it.
pid_t fork_zmq_peer(const std::string& ep, bool echo) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.connect(ep);
    zmq::message_t msg;
    for (;;) {
        (void)s.recv(msg);
        if (msg.size() == 1) ::_exit(0);
        if (echo)
            s.send(msg, zmq::send_flags::none);
        else
            s.send(zmq::str_buffer("k"), zmq::send_flags::none);
    }
}

void BM_zmq_rtt(benchmark::State& state) {
    const std::string ep = zmq_endpoint();
    const pid_t pid = fork_zmq_peer(ep, true);
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.bind(ep);
    char data[16] = "0123456789abcde";
    zmq::message_t reply;
    for (auto _ : state) {
        s.send(zmq::buffer(data, sizeof data), zmq::send_flags::none);
        (void)s.recv(reply);
    }
    s.send(zmq::str_buffer("q"), zmq::send_flags::none);
    ::waitpid(pid, nullptr, 0);
    state.SetItemsProcessed(state.iterations());
}

void BM_zmq_stream64(benchmark::State& state) {
    const std::string ep = zmq_endpoint();
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        zmq::context_t ctx;
        zmq::socket_t s(ctx, zmq::socket_type::pair);
        s.connect(ep);
        zmq::message_t msg;
        std::size_t count = 0;
        for (;;) {
            (void)s.recv(msg);
            if (msg.size() == 1) ::_exit(0);
            if (++count == stream_batch) {
                count = 0;
                s.send(zmq::str_buffer("kk"), zmq::send_flags::none);
            }
        }
    }
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.bind(ep);
    const Chunk c{};
    zmq::message_t ack;
    for (auto _ : state) {
        for (std::size_t i = 0; i < stream_batch; ++i) s.send(zmq::buffer(c.data(), c.size()), zmq::send_flags::none);
        (void)s.recv(ack);
    }
    s.send(zmq::str_buffer("q"), zmq::send_flags::none);
    ::waitpid(pid, nullptr, 0);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * stream_batch));
}

// A peer for the payload sweep: one `size` message over a ZeroMQ PAIR
// (ipc) and a 1-byte ack, as BM_raw_large and BM_coproc_large do.
void BM_zmq_large(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::string ep = zmq_endpoint();
    const pid_t pid = fork_zmq_peer(ep, false);
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.bind(ep);
    const std::string payload(size, 'x');
    zmq::message_t ack;
    for (int i = 0; i < large_warmup; ++i) {
        s.send(zmq::buffer(payload), zmq::send_flags::none);
        (void)s.recv(ack);
    }
    for (auto _ : state) {
        s.send(zmq::buffer(payload), zmq::send_flags::none);
        (void)s.recv(ack);
    }
    s.send(zmq::str_buffer("q"), zmq::send_flags::none);
    ::waitpid(pid, nullptr, 0);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

}  // namespace

BENCHMARK(BM_raw_rtt)->UseRealTime();
BENCHMARK(BM_raw_rtt_latency)->UseRealTime();
BENCHMARK(BM_coproc_rtt<coproc::PriorityMessenger<std::string>>)->Name("BM_coproc_rtt_priority")->UseRealTime();
BENCHMARK(BM_coproc_rtt<coproc::MultiMessenger<std::string>>)->Name("BM_coproc_rtt_multi")->UseRealTime();
BENCHMARK(BM_raw_stream64_single)->UseRealTime();
BENCHMARK(BM_raw_stream64_coalesced)->UseRealTime();
BENCHMARK(BM_coproc_stream64_single)->UseRealTime();
BENCHMARK(BM_coproc_stream64_batch)->UseRealTime();
// Payload sweep 16 B ... 16 MiB (one-way message + 1-byte acknowledgement).
BENCHMARK(BM_raw_large)->RangeMultiplier(16)->Range(16, 16 << 20)->UseRealTime();
BENCHMARK(BM_coproc_large)->RangeMultiplier(16)->Range(16, 16 << 20)->UseRealTime();
BENCHMARK(BM_coproc_large_blob)->RangeMultiplier(16)->Range(16, 16 << 20)->UseRealTime();
BENCHMARK(BM_zmq_large)->RangeMultiplier(16)->Range(16, 16 << 20)->UseRealTime();
BENCHMARK(BM_coproc_rtt_latency)->UseRealTime();
BENCHMARK(BM_raw_fork_waitpid)->UseRealTime();
BENCHMARK(BM_coproc_spawn)->UseRealTime();
BENCHMARK(BM_raw_posix_spawn)->UseRealTime();
BENCHMARK(BM_coproc_spawn_exec)->UseRealTime();
BENCHMARK(BM_boost_mq_rtt)->UseRealTime();
BENCHMARK(BM_boost_mq_stream64)->UseRealTime();
BENCHMARK(BM_zmq_rtt)->UseRealTime();
BENCHMARK(BM_zmq_stream64)->UseRealTime();

int main(int argc, char** argv) {
    // One CPU for host and workers alike (inherited across fork).
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (::sched_setaffinity(0, sizeof one, &one) != 0) std::perror("sched_setaffinity");
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
