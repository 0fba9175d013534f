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

// A raw ROUTER and its DEALER echo process: round() times one round of
// tasks_per_round round trips, `in_flight` at a time.
class RawPeer {
public:
    explicit RawPeer(const char* self) : router_(ctx_, zmq::socket_type::router) {
        router_.bind("tcp://127.0.0.1:*");
        pid_ = start(self, "raw-worker", router_.get(zmq::sockopt::last_endpoint));
        zmq::message_t id, body;
        (void)router_.recv(id);
        (void)router_.recv(body);  // "hi"
        peer_ = id.to_string();
    }
    RawPeer(const RawPeer&) = delete;
    RawPeer& operator=(const RawPeer&) = delete;
    ~RawPeer() {
        router_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
        router_.send(zmq::str_buffer("q"), zmq::send_flags::none);
        ::waitpid(pid_, nullptr, 0);
    }
    double round() {
        zmq::message_t id, body;
        const auto t0 = Clock::now();
        int sent = 0, got = 0;
        long sum = 0;
        while (got < tasks_per_round) {
            while (sent < tasks_per_round && static_cast<std::size_t>(sent - got) < in_flight) {
                router_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
                router_.send(zmq::buffer(&sent, sizeof sent), zmq::send_flags::none);
                ++sent;
            }
            (void)router_.recv(id);
            (void)router_.recv(body);
            long v = 0;
            std::memcpy(&v, body.data(), sizeof v);
            sum += v;
            ++got;
        }
        if (sum < 0) std::abort();
        return tasks_per_round / seconds_since(t0);
    }

private:
    zmq::context_t ctx_;
    zmq::socket_t router_;
    pid_t pid_ = 0;
    std::string peer_;
};

// Tasks per second of `reps` maps of n tasks in a row. Several maps per
// round when one map is too short to time well on a shared machine.
double map_rate(coproc::Pool<int, long>& pool, int n, std::size_t chunksize, int reps = 1) {
    std::vector<int> tasks(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) tasks[static_cast<std::size_t>(i)] = i;
    coproc::MapOptions m;
    m.chunksize = chunksize;
    const auto t0 = Clock::now();
    for (int k = 0; k < reps; ++k) {
        const auto out = pool.map(tasks, m);
        if (out.size() != tasks.size()) std::abort();
    }
    return n * reps / seconds_since(t0);
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

    // The one-task-per-message figures: a round of each in turn, so a
    // slow spell of the shared machine weighs on all three alike (round 0
    // warms up).
    std::vector<double> local, remote, raw;
    {
        coproc::PoolOptions one;
        one.workers = 1;
        coproc::Pool<int, long> local_pool(square, one);
        RemotePool remote_pool(argv[0], 1);
        RawPeer raw_peer(argv[0]);
        for (int r = 0; r <= rounds; ++r) {
            const double l = map_rate(local_pool, tasks_per_round, 1);
            const double p = map_rate(*remote_pool.pool, tasks_per_round, 1);
            const double z = raw_peer.round();
            if (r == 0) continue;
            local.push_back(l);
            remote.push_back(p);
            raw.push_back(z);
        }
    }
    std::vector<double> remote_chunked;
    {
        RemotePool two(argv[0], 2);
        for (int r = 0; r <= rounds; ++r) {
            const double rate = map_rate(*two.pool, 100'000, 0, 20);  // one map takes about a millisecond
            if (r > 0) remote_chunked.push_back(rate);
        }
    }
    fmt::print(
        "{{\"remote_pool_tasks_per_s\": {:.0f}, \"raw_zmq_roundtrips_per_s\": {:.0f}, \"remote_pool_vs_raw_zmq\": "
        "{:.3f}, \"remote_pool_vs_local_pool\": {:.3f}, \"remote_map_tasks_per_s\": {:.0f}}}\n",
        median(remote), median(raw), median(remote) / median(raw), median(remote) / median(local),
        median(remote_chunked));
}
