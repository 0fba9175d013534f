// Lifecycle: no fd leak, no zombie, no orphan; the shutdown policy; a killed
// host takes its workers with it.
#include <catch2/catch.hpp>

#include <coproc/worker_resource.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
extern "C" {
#include <sys/pidfd.h>
}
#include <poll.h>

#include <chrono>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::ExitStatus;

namespace {

using IntWorker = coproc::WorkerResource<coproc::PriorityMessenger<int>>;

void echo(coproc::PriorityMessenger<int>& m) {
    coproc::test::child_watchdog();
    for (;;) m.send_reply(m.receive_blocking());
}

// Becomes the reaper of orphaned descendants, so a worker whose host died is
// re-parented to this test process and can be waited for here.
struct Subreaper {
    Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
    ~Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
};

// Waits up to `limit` for `pid` (our child or re-parented to us) to exit, and reaps it.
bool reaped_within(int pidfd, pid_t pid, std::chrono::milliseconds limit) {
    pollfd p{pidfd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
    return ::waitpid(pid, nullptr, 0) == pid;
}

// A host process (forked here) that starts a worker, reports the worker's pid
// on `report`, then waits to be killed.
[[noreturn]] void run_host(int report, bool busy_worker, int death_signal) {
    coproc::test::child_watchdog(20);
    coproc::WorkerOptions options;
    options.parent_death_signal = death_signal;
    IntWorker w(options, [busy_worker](coproc::PriorityMessenger<int>& m) {
        coproc::test::child_watchdog(20);
        m.send_norequest(1);
        if (busy_worker) {
            volatile unsigned long spin = 0;
            for (;;) spin = spin + 1;  // computes, never reads
        }
        (void)m.receive_blocking();  // blocks until the host is gone
    });
    (void)w.messenger().receive_blocking(5s);  // the worker is running its target
    const pid_t pid = static_cast<pid_t>(w.pid());
    (void)!::write(report, &pid, sizeof pid);
    for (;;) ::pause();
}

}  // namespace

TEST_CASE("200 create/destroy cycles leave no open fd and no zombie", "[lifecycle]") {
    const auto fds_before = coproc::test::open_fds();
    std::vector<long> pids;
    for (int i = 0; i < 200; ++i) {
        IntWorker w(echo);
        pids.push_back(w.pid());
        if (i % 2 == 0) {
            w.messenger().send_request(i);
            CHECK(w.messenger().receive_blocking(5s) == i);
        }
    }
    CHECK(coproc::test::open_fds() == fds_before);
    for (const long pid : pids) REQUIRE(coproc::test::not_our_child(pid));
}

TEST_CASE("a worker that ignores close requests and SIGTERM is killed and reaped by the destructor", "[lifecycle]") {
    coproc::WorkerOptions options;
    options.close_grace = 100ms;
    options.term_grace = 100ms;
    long pid = 0;
    std::chrono::steady_clock::time_point scope_end;
    {
        IntWorker w(options, [](coproc::PriorityMessenger<int>& m) {
            coproc::test::child_watchdog(60);  // far beyond the bound below
            ::signal(SIGTERM, SIG_IGN);
            m.send_norequest(1);
            for (;;) {
                try {
                    (void)m.receive_blocking();
                } catch (const coproc::ResourceRequestedClose&) {
                    // ignored on purpose
                }
            }
        });
        pid = w.pid();
        CHECK(w.messenger().receive_blocking(5s) == 1);  // SIGTERM is ignored from here on
        scope_end = std::chrono::steady_clock::now();
    }
    // The policy's guarantee is a time: close_grace + term_grace, then
    // SIGKILL. Generous slack for a loaded machine, yet far below the child's
    // watchdog, so a destructor that never sends SIGKILL fails here instead
    // of passing once the watchdog ends the worker.
    CHECK(std::chrono::steady_clock::now() - scope_end < 10s);
    CHECK(coproc::test::not_our_child(pid));
    CHECK(coproc::test::process_gone(pid));
}

TEST_CASE("join with a timeout on a worker that does not exit throws Timeout, the destructor still ends it",
          "[lifecycle]") {
    coproc::WorkerOptions options;
    options.close_grace = 50ms;
    options.term_grace = 2s;
    long pid = 0;
    {
        IntWorker w(options, [](coproc::PriorityMessenger<int>& m) {
            coproc::test::child_watchdog();
            m.send_norequest(1);
            for (;;) ::pause();  // never reads, SIGTERM kills it
        });
        pid = w.pid();
        CHECK(w.messenger().receive_blocking(5s) == 1);
        CHECK_THROWS_AS(w.join(50ms), coproc::Timeout);
        CHECK(w.is_alive());
    }
    CHECK(coproc::test::not_our_child(pid));
}

TEST_CASE("an exception unwinding through a WorkerResource scope still cleans up", "[lifecycle]") {
    const auto fds_before = coproc::test::open_fds();
    long pid = 0;
    try {
        IntWorker w(echo);
        pid = w.pid();
        throw std::runtime_error("unwind");
    } catch (const std::runtime_error&) {
    }
    CHECK(coproc::test::not_our_child(pid));
    CHECK(coproc::test::open_fds() == fds_before);
}

TEST_CASE("a worker streaming into a full socket still joins (incoming data is buffered)", "[lifecycle]") {
    IntWorker w([](coproc::PriorityMessenger<int>& m) {
        coproc::test::child_watchdog();
        for (int i = 0; i < 200'000; ++i) m.send_norequest(i);  // far more than the socket holds
        (void)m.receive_blocking();
    });
    CHECK(w.join(20s) == ExitStatus::exited_with(0));
    auto got = w.messenger().receive_available();
    REQUIRE(got.size() == 200'000);
    CHECK(got.front() == 0);
    CHECK(got.back() == 199'999);
}

TEST_CASE("a target that returns at once: clean exit, no fd left behind", "[lifecycle]") {
    const auto fds_before = coproc::test::open_fds();
    {
        IntWorker w([](coproc::PriorityMessenger<int>&) { return 5; });
        CHECK(w.join(5s) == ExitStatus::exited_with(5));
        CHECK_THROWS_AS(w.messenger().receive_blocking(1s), coproc::WorkerDied);
    }
    CHECK(coproc::test::open_fds() == fds_before);
}

TEST_CASE("host killed: its workers exit within a second", "[lifecycle]") {
    const Subreaper subreaper;
    struct Case {
        const char* name;
        bool busy;
        int death_signal;
    };
    const Case cases[] = {{"blocked in receive, no death signal (EOF path)", false, 0},
                          {"blocked in receive, default death signal", false, SIGKILL},
                          {"computing in a loop, default death signal", true, SIGKILL}};
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            int report[2];
            REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
            const pid_t host = ::fork();
            REQUIRE(host >= 0);
            if (host == 0) {
                ::close(report[0]);
                run_host(report[1], c.busy, c.death_signal);
            }
            ::close(report[1]);
            pid_t worker = 0;
            pollfd p{report[0], POLLIN, 0};
            REQUIRE(::poll(&p, 1, 10'000) == 1);
            REQUIRE(::read(report[0], &worker, sizeof worker) == static_cast<long>(sizeof worker));
            ::close(report[0]);
            const int worker_fd = ::pidfd_open(worker, 0);
            REQUIRE(worker_fd >= 0);
            ::kill(host, SIGKILL);
            REQUIRE(::waitpid(host, nullptr, 0) == host);
            CHECK(reaped_within(worker_fd, worker, 1000ms));
            ::close(worker_fd);
        }
    }
}
