// The remote pool tests' worker program (tests/test_remote.cpp): joins the
// pool at argv[1] and squares ints, as a program started by ssh or srun
// would. Usage: remote_worker ENDPOINT MODE [SERVER_KEY PUBLIC SECRET]
//   MODE square: x -> x*x (each task takes about a millisecond)
//        wait:   the same, and waits for a new host when its host is lost
//        strings: a worker of other task types (refused by an int pool)
#include <coproc/remote_pool.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

namespace {

long square(const int& x) {
    // A little work, so a map is still running when a test stops a worker.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(800);
    while (std::chrono::steady_clock::now() < until) {
    }
    return static_cast<long>(x) * x;
}

}  // namespace

int main(int argc, char** argv) {
    (void)::alarm(120);  // a watchdog: no test worker outlives its test
    if (argc < 3) {
        std::fprintf(stderr, "usage: remote_worker ENDPOINT MODE [SERVER_KEY PUBLIC SECRET]\n");
        return 64;
    }
    coproc::RemoteWorkerOptions options;
    options.connect = argv[1];
    const std::string_view mode = argv[2];
    if (argc >= 6) {
        options.server_key = argv[3];
        options.keys = {argv[4], argv[5]};
    }
    options.join_timeout = std::chrono::milliseconds(2000);
    if (mode == "wait") options.on_host_lost = coproc::RemoteWorkerOptions::OnHostLost::wait;
    if (mode == "strings")
        return coproc::remote_worker_main<std::string, long>(
            options, [](const std::string& s) { return static_cast<long>(s.size()); });
    return coproc::remote_worker_main<int, long>(options, square);
}
