// The one worker program of the spawn-mode tests (test_spawn.cpp, and
// test_pool.cpp's spawn-mode pools); argv[1] picks what it does. It speaks
// PriorityMessenger<std::string>, except in mode "int", which speaks
// PriorityMessenger<int> (a type mismatch), and in the "pool" modes, which
// serve a Pool<int, long>.
#include <coproc/pool.hpp>
#include <coproc/worker_main.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "support.hpp"

namespace {

using M = coproc::PriorityMessenger<std::string>;

void echo(M& m) {
    for (;;) m.send_reply(m.receive_blocking());
}

// What this process got from its host: open fds, whether COPROC_WORKER is
// still visible, SIGUSR1's disposition, the signal mask, the parent-death signal.
std::string report() {
    std::string fds;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        const int own = ::dirfd(d);
        while (const dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.' || std::atoi(e->d_name) == own) continue;
            fds += (fds.empty() ? "" : ",") + std::string(e->d_name);
        }
        ::closedir(d);
    }
    struct sigaction usr1 {};
    (void)::sigaction(SIGUSR1, nullptr, &usr1);
    sigset_t mask;
    (void)::sigprocmask(SIG_BLOCK, nullptr, &mask);
    bool empty_mask = true;
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sigismember(&mask, sig) == 1) empty_mask = false;
    }
    int death_signal = 0;
    (void)::prctl(PR_GET_PDEATHSIG, &death_signal);
    return fmt::format(
        "fds={} env={} usr1={} mask={} pdeathsig={}", fds, std::getenv("COPROC_WORKER") != nullptr ? "set" : "unset",
        usr1.sa_handler == SIG_DFL ? "default" : "changed", empty_mask ? "empty" : "blocked", death_signal);
}

}  // namespace

int main(int argc, char** argv) {
    (void)::alarm(60);  // a watchdog: no test worker outlives its test
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode == "own-options") {  // its own MessengerOptions, not the host's
        coproc::MessengerOptions own;
        own.max_frame_size = 3 << 20;
        return coproc::worker_main<M>(own, [](M& m) { m.send_norequest(std::to_string(m.link().max_frame_size())); });
    }
    if (mode == "pool") {  // x -> x*x; -1 kills its worker (a poison task)
        return coproc::pool_worker_main<int, long>([](const int& x) -> long {
            if (x == -1) ::raise(SIGKILL);
            return static_cast<long>(x) * x;
        });
    }
    if (mode == "pool-print") {  // x -> x*x, printing "task x" on stdout and "err x" on stderr
        return coproc::pool_worker_main<int, long>([](const int& x) -> long {
            std::printf("task %d\n", x);
            std::fflush(stdout);
            std::fprintf(stderr, "err %d\n", x);
            return static_cast<long>(x) * x;
        });
    }
    if (mode == "pool-pid") {  // the worker's pid, for recycling
        return coproc::pool_worker_main<int, long>([](const int&) -> long { return ::getpid(); });
    }
    if (mode == "pool-init-fails") {
        return coproc::pool_worker_main<int, long>([](const int& x) -> long { return x; },
                                                   [] { throw std::runtime_error("no model file"); });
    }
    if (mode == "int") {
        using I = coproc::PriorityMessenger<int>;
        return coproc::worker_main<I>([](I& m) { (void)m.receive_blocking(); });
    }
    return coproc::worker_main<M>([&](M& m) -> int {
        if (mode == "echo") echo(m);
        if (mode == "exit") return std::atoi(argv[2]);
        if (mode == "throw") throw std::invalid_argument("bad input, said the spawned worker");
        if (mode == "abort") std::abort();
        if (mode == "busy") {
            volatile unsigned long spin = 0;
            for (;;) spin = spin + 1;  // computes, never reads: only a signal ends it
        }
        if (mode == "report") m.send_norequest(report());
        if (mode == "limits") m.send_norequest(coproc::test::limits_report());
        if (mode == "options") m.send_norequest(std::to_string(m.link().max_frame_size()));
        if (mode == "where") {
            char cwd[4096] = "?";
            (void)!::getcwd(cwd, sizeof cwd);
            const char* var = std::getenv("COPROC_TEST_VAR");
            const char* home = std::getenv("HOME");
            m.send_norequest(
                fmt::format("{} {} {}", cwd, var != nullptr ? var : "unset", home != nullptr ? home : "unset"));
        }
        if (mode == "stdout") {
            std::printf("printed by a spawned worker\n");
            m.send_norequest("printed");
        }
        if (mode == "stdout-unflushed") {  // a line, not flushed, then a reply
            std::printf("not flushed\n");
            m.send_norequest("printed");
        }
        if (mode == "stdout-stderr") {  // flushed lines on both, then a reply
            std::printf("out one\nout two\n");
            std::fflush(stdout);
            std::fprintf(stderr, "err one\n");
            m.send_norequest("printed");
        }
        if (mode == "nested") {
            // Spawns a worker of its own (this program, echoing) and relays.
            coproc::WorkerResource<M> inner(coproc::Executable{argv[0], {"echo"}});
            inner.messenger().send_request(m.receive_blocking() + " via a nested worker");
            m.send_reply(inner.messenger().receive_blocking());
            return inner.join(std::chrono::seconds(10)).code();
        }
        (void)m.receive_blocking();  // wait for the close request
        return 0;
    });
}
