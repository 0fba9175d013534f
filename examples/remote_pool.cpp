// A pool whose workers are other programs reaching it over the network:
// here this same program started twice on this machine, connecting over
// loopback TCP with CURVE keys, as ssh or srun would start it elsewhere.
//
//   remote_pool                 the host: a pool, two remote workers, a map
//   remote_pool worker          a worker (reads COPROC_EXAMPLE_* from its environment)
#include <coproc/pool.hpp>
#include <coproc/remote_pool.hpp>
#include <fmt/format.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

extern char** environ;
using namespace std::chrono_literals;

long square(const int& x) { return static_cast<long>(x) * x; }

// The worker: connect, serve until the host closes the pool.
int worker() {
    coproc::RemoteWorkerOptions options;
    options.connect = std::getenv("COPROC_EXAMPLE_ENDPOINT");
    options.server_key = std::getenv("COPROC_EXAMPLE_SERVER_KEY");
    // Keys come from the environment (or a file), never the command line:
    // every user of the machine can read another's command line.
    options.keys = {std::getenv("COPROC_EXAMPLE_PUBLIC_KEY"), std::getenv("COPROC_EXAMPLE_SECRET_KEY")};
    return coproc::remote_worker_main<int, long>(options, square);
}

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "worker") return worker();

    // The host's key pair, and the one key pair its workers share here.
    const auto host_keys = coproc::generate_curve_keys();
    const auto worker_keys = coproc::generate_curve_keys();

    auto listener = coproc::listen_for_workers({.bind = "tcp://127.0.0.1:*",  // any free port
                                                .keys = host_keys,
                                                .worker_keys = {worker_keys.public_key}});
    coproc::PoolOptions options;
    options.workers = 0;  // remote workers only
    options.remote = listener;
    coproc::Pool<int, long> pool(square, options);

    // Start two workers, as a launcher on another machine would.
    setenv("COPROC_EXAMPLE_ENDPOINT", listener->endpoint().c_str(), 1);
    setenv("COPROC_EXAMPLE_SERVER_KEY", host_keys.public_key.c_str(), 1);
    setenv("COPROC_EXAMPLE_PUBLIC_KEY", worker_keys.public_key.c_str(), 1);
    setenv("COPROC_EXAMPLE_SECRET_KEY", worker_keys.secret_key.c_str(), 1);
    std::vector<pid_t> pids;
    for (int i = 0; i < 2; ++i) {
        pid_t pid = 0;
        char* args[] = {argv[0], const_cast<char*>("worker"), nullptr};
        if (posix_spawn(&pid, argv[0], nullptr, nullptr, args, environ) == 0) pids.push_back(pid);
    }
    // Tasks wait for a worker to join: a map blocks until one has.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (listener->stats().connected < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    fmt::print("remote workers joined: {}\n", listener->stats().connected);

    std::vector<int> tasks;
    for (int i = 0; i < 1000; ++i) tasks.push_back(i);
    long sum = 0;
    for (long r : pool.map(tasks)) sum += r;
    fmt::print("sum of squares of 0..999: {}\n", sum);

    std::uint64_t served = 0;
    for (const auto& w : pool.stats().workers) served += w.tasks_served;
    fmt::print("tasks served by remote workers: {}\n", served);

    pool.shutdown();  // tells the workers to close: they exit 0
    for (pid_t pid : pids) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        fmt::print("worker exit code: {}\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}
