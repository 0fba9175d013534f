// Remote pool figures for scripts/bench, over loopback TCP: tasks/s of the
// trivial task (x -> x*x) one task per message through a remote worker,
// against raw ZeroMQ DEALER/ROUTER round trips with as many messages in
// flight, and against a local pool; and a chunked map over two remote
// workers. Prints one JSON line of medians over ROUNDS.
//   bench_remote [ROUNDS]              the host (starts its own workers)
//   bench_remote worker ENDPOINT       a remote pool worker
//   bench_remote raw-worker ENDPOINT   the raw DEALER echo
#include <coproc/pool.hpp>
#include <coproc/remote_pool.hpp>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int tasks_per_round = 20'000;
constexpr std::size_t in_flight = 64;  // the pool's default window

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}
long square(const int& x) { return static_cast<long>(x) * x; }

pid_t start(const char* self, const char* mode, const std::string& endpoint) {
    pid_t pid = 0;
    char* args[] = {const_cast<char*>(self), const_cast<char*>(mode), const_cast<char*>(endpoint.c_str()), nullptr};
    if (posix_spawn(&pid, self, nullptr, nullptr, args, environ) != 0) std::abort();
    return pid;
}

// DEALER: answers each 4-byte int with its 8-byte square; "q" ends it.
int raw_worker(const char* endpoint) {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.connect(endpoint);
    s.send(zmq::str_buffer("hi"), zmq::send_flags::none);
    zmq::message_t msg;
    for (;;) {
        (void)s.recv(msg);
        if (msg.size() != sizeof(int)) return 0;
        int x = 0;
        std::memcpy(&x, msg.data(), sizeof x);
        const long r = square(x);
        s.send(zmq::buffer(&r, sizeof r), zmq::send_flags::none);
    }
}

// Round trips per second through one raw DEALER, `in_flight` at a time.
std::vector<double> raw_rates(const char* self, int rounds) {
    zmq::context_t ctx;
    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.bind("tcp://127.0.0.1:*");
    const pid_t pid = start(self, "raw-worker", router.get(zmq::sockopt::last_endpoint));
    zmq::message_t id, body;
    (void)router.recv(id);
    (void)router.recv(body);  // "hi"
    const std::string peer = id.to_string();
    std::vector<double> rates;
    for (int r = 0; r <= rounds; ++r) {  // round 0 warms up
        const auto t0 = Clock::now();
        int sent = 0, got = 0;
        long sum = 0;
        while (got < tasks_per_round) {
            while (sent < tasks_per_round && static_cast<std::size_t>(sent - got) < in_flight) {
                router.send(zmq::buffer(peer), zmq::send_flags::sndmore);
                router.send(zmq::buffer(&sent, sizeof sent), zmq::send_flags::none);
                ++sent;
            }
            (void)router.recv(id);
            (void)router.recv(body);
            long v = 0;
            std::memcpy(&v, body.data(), sizeof v);
            sum += v;
            ++got;
        }
        if (sum < 0) std::abort();
        if (r > 0) rates.push_back(tasks_per_round / seconds_since(t0));
    }
    router.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    router.send(zmq::str_buffer("q"), zmq::send_flags::none);
    ::waitpid(pid, nullptr, 0);
    return rates;
}

// Tasks per second of `reps` maps of n tasks in a row, for each of `rounds`
// rounds (after one warm-up round). Several maps per round when one map is
// too short to time well on a shared machine.
std::vector<double> map_rates(coproc::Pool<int, long>& pool, int n, std::size_t chunksize, int rounds, int reps = 1) {
    std::vector<int> tasks(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) tasks[static_cast<std::size_t>(i)] = i;
    coproc::MapOptions m;
    m.chunksize = chunksize;
    std::vector<double> rates;
    for (int r = 0; r <= rounds; ++r) {
        const auto t0 = Clock::now();
        for (int k = 0; k < reps; ++k) {
            const auto out = pool.map(tasks, m);
            if (out.size() != tasks.size()) std::abort();
        }
        if (r > 0) rates.push_back(n * reps / seconds_since(t0));
    }
    return rates;
}

// A pool of `remotes` remote workers (this program), all joined.
struct RemotePool {
    std::shared_ptr<coproc::RemoteWorkers> listener;
    std::optional<coproc::Pool<int, long>> pool;
    std::vector<pid_t> pids;
    RemotePool(const char* self, int remotes) {
        listener = coproc::listen_for_workers({.bind = "tcp://127.0.0.1:*"});
        coproc::PoolOptions o;
        o.workers = 0;
        o.remote = listener;
        pool.emplace(square, o);
        for (int i = 0; i < remotes; ++i) pids.push_back(start(self, "worker", listener->endpoint()));
        const auto until = Clock::now() + std::chrono::seconds(20);
        while (listener->stats().connected < static_cast<std::uint64_t>(remotes) && Clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (listener->stats().connected < static_cast<std::uint64_t>(remotes)) std::abort();
    }
    ~RemotePool() {
        pool.reset();
        for (pid_t p : pids) ::waitpid(p, nullptr, 0);
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc > 2 && std::strcmp(argv[1], "worker") == 0) {
        coproc::RemoteWorkerOptions o;
        o.connect = argv[2];
        return coproc::remote_worker_main<int, long>(o, square);
    }
    if (argc > 2 && std::strcmp(argv[1], "raw-worker") == 0) return raw_worker(argv[2]);
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;

    std::vector<double> local;
    {
        coproc::PoolOptions one;
        one.workers = 1;
        coproc::Pool<int, long> pool(square, one);
        local = map_rates(pool, tasks_per_round, 1, rounds);
    }
    std::vector<double> remote, remote_chunked;
    {
        RemotePool one(argv[0], 1);
        remote = map_rates(*one.pool, tasks_per_round, 1, rounds);
    }
    {
        RemotePool two(argv[0], 2);
        remote_chunked = map_rates(*two.pool, 100'000, 0, rounds, 20);  // one map takes about a millisecond
    }
    const std::vector<double> raw = raw_rates(argv[0], rounds);
    fmt::print(
        "{{\"remote_pool_tasks_per_s\": {:.0f}, \"raw_zmq_roundtrips_per_s\": {:.0f}, \"remote_pool_vs_raw_zmq\": "
        "{:.3f}, \"remote_pool_vs_local_pool\": {:.3f}, \"remote_map_tasks_per_s\": {:.0f}}}\n",
        median(remote), median(raw), median(remote) / median(raw), median(remote) / median(local),
        median(remote_chunked));
}
