// WorkerResource: echo workers, targets of every shape, exit codes, remote
// errors, and workers that die at the wrong moment.
#include <catch2/catch.hpp>

#include <coproc/worker_resource.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Channel;
using coproc::ExitStatus;

namespace {

using IntWorker = coproc::WorkerResource<coproc::PriorityMessenger<int>>;

struct OrderedMsg {
    int priority = 0;
    int id = 0;
    template <class A>
    void serialize(A& a) {
        a(priority, id);
    }
};
using StrWorker = coproc::WorkerResource<coproc::MultiMessenger<std::string>>;

// Every test child gets a watchdog, so none can outlive its test.
template <class F>
auto guarded(F f) {
    return [f](auto& m, auto&&... args) {
        coproc::test::child_watchdog();
        return f(m, args...);
    };
}

void echo(coproc::PriorityMessenger<int>& m) {
    coproc::test::child_watchdog();
    for (;;) m.send_reply(m.receive_blocking());
}

// Echo that keeps norequests norequests, like Python's test echo worker.
struct EchoWorker {
    int offset = 0;
    void operator()(coproc::PriorityMessenger<int>& m) const {
        coproc::test::child_watchdog();
        for (;;) {
            const int v = m.receive_blocking();
            if (v >= 1000)
                m.send_reply(v + offset);
            else
                m.send_norequest(v + offset);
        }
    }
};

}  // namespace

TEST_CASE("echo through a WorkerResource: 10 norequests, then 10 requests", "[worker]") {
    IntWorker w(EchoWorker{});
    auto& m = w.messenger();
    CHECK(w.is_alive());
    for (int i = 0; i < 10; ++i) m.send_norequest(i);
    CHECK(m.remaining() == 0);
    // Wait (with a deadline) until all ten are back, without sleeping.
    while (m.queue_size() < 10) m.await_available(5s);
    CHECK(m.available() == 10);
    CHECK(m.receive_available() == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    for (int i = 0; i < 10; ++i) {
        m.send_request(1000 + i);
        CHECK(m.remaining() == i + 1);
    }
    std::vector<int> got;
    for (int v : m.receive_remaining(Channel{}, 5s)) got.push_back(v - 1000);
    CHECK(got == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(w.join(5s) == ExitStatus::exited_with(0));  // the target let ResourceRequestedClose escape: clean
    CHECK_FALSE(w.is_alive());
}

TEST_CASE("a forked worker's message sent behind the host's backlog is still ordered among it", "[worker][order]") {
    using M = coproc::PriorityMessenger<OrderedMsg>;
    int sent_pipe[2];
    REQUIRE(::pipe2(sent_pipe, O_CLOEXEC) == 0);
    coproc::WorkerResource<M> w([&sent_pipe](M& m) {
        for (int i = 0; i < 50; ++i) m.send_norequest(OrderedMsg{10, i});
        (void)m.receive_blocking();  // the host has queued the backlog
        m.send_norequest(OrderedMsg{0, 1000});
        // Tell the host out of band that the urgent message is written.
        const char done = 1;
        if (::write(sent_pipe[1], &done, 1) != 1) std::abort();
        (void)m.receive_blocking();
    });
    ::close(sent_pipe[1]);
    auto& m = w.messenger();
    std::size_t queued = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (queued < 50 && std::chrono::steady_clock::now() < deadline) {
        m.await_available(5s);
        queued = m.available();
    }
    REQUIRE(queued == 50);
    CHECK(m.receive_blocking(5s).id == 0);
    m.send_norequest(OrderedMsg{0, 0});
    pollfd pfd{sent_pipe[0], POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10000) == 1);
    ::close(sent_pipe[0]);
    // Written while 49 were queued here: it is received first.
    CHECK(m.receive_blocking(5s).id == 1000);
    CHECK(m.receive_blocking(5s).id == 1);
    m.send_norequest(OrderedMsg{0, 0});
}

TEST_CASE("a receive that times out names its channel and the worker's pid", "[worker]") {
    StrWorker w([](coproc::MultiMessenger<std::string>& m) { (void)m.receive_blocking(); });
    try {
        (void)w.messenger().receive_blocking("jobs", 50ms);
        FAIL("receive_blocking returned");
    } catch (const coproc::Timeout& e) {
        CHECK_THAT(e.what(),
                   Catch::Contains("channel 'jobs'") && Catch::Contains(fmt::format("worker pid {}", w.pid())));
    }
}

TEST_CASE("targets: functions, lambdas with arguments, function objects; int results are exit codes", "[worker]") {
    SECTION("function") {
        IntWorker w(echo);
        w.messenger().send_request(5);
        CHECK(w.messenger().receive_blocking(5s) == 5);
    }
    SECTION("lambda with arguments copied before the fork") {
        std::string prefix = "hello ";
        StrWorker w(guarded([](coproc::MultiMessenger<std::string>& m, const std::string& p, int n) {
                        for (int i = 0; i < n; ++i) m.send_norequest(p + std::to_string(i));
                        return 7;
                    }),
                    prefix, 3);
        prefix = "changed";
        CHECK(w.messenger().receive_blocking(5s) == "hello 0");
        CHECK(w.messenger().receive_blocking(5s) == "hello 1");
        CHECK(w.messenger().receive_blocking(5s) == "hello 2");
        CHECK(w.join(5s) == ExitStatus::exited_with(7));
        CHECK(w.exit_status() == ExitStatus::exited_with(7));
    }
    SECTION("function object with state") {
        IntWorker w(EchoWorker{100});
        w.messenger().send_request(1000);
        CHECK(w.messenger().receive_blocking(5s) == 1100);
    }
}

TEST_CASE("an exception escaping the target reaches the host; exit code 1", "[worker]") {
    IntWorker w(guarded([](coproc::PriorityMessenger<int>& m) -> int {
        (void)m.receive_blocking();
        throw std::domain_error("target failed");
    }));
    w.messenger().send_norequest(1);
    CHECK_THROWS_AS(w.messenger().receive_blocking(5s), std::domain_error);
    CHECK(w.join(5s) == ExitStatus::exited_with(1));
}

TEST_CASE("a worker that catches the close request can answer with an error", "[worker]") {
    IntWorker w(guarded([](coproc::PriorityMessenger<int>& m) {
        try {
            (void)m.receive_blocking();
        } catch (const coproc::ResourceRequestedClose&) {
            m.send_error(std::invalid_argument("process was closed successfully"));
        }
    }));
    w.messenger().send_close_request();
    CHECK_THROWS_WITH(w.messenger().receive_blocking(5s), "process was closed successfully");
    CHECK(w.join(5s).success());
}

TEST_CASE("workers that die: WorkerDied with the right status, data sent before stays, no hang", "[worker]") {
    struct Case {
        const char* name;
        int how;
        ExitStatus expected;
    };
    const Case cases[] = {{"abort", 0, ExitStatus::killed_by(SIGABRT)},
                          {"SIGKILL", 1, ExitStatus::killed_by(SIGKILL)},
                          {"_exit(3)", 2, ExitStatus::exited_with(3)},
                          {"SIGSEGV", 3, ExitStatus::killed_by(SIGSEGV)}};
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            IntWorker w(guarded([](coproc::PriorityMessenger<int>& m, int how) {
                            m.send_norequest(41);
                            m.send_norequest(42, "side");
                            (void)m.receive_blocking();
                            switch (how) {
                                case 0: std::abort();
                                case 1: ::kill(::getpid(), SIGKILL); break;
                                case 2: ::_exit(3);
                                default: ::raise(SIGSEGV); break;
                            }
                        }),
                        c.how);
            auto& m = w.messenger();
            m.send_norequest(0);
            CHECK(m.receive_blocking(5s) == 41);
            try {
                (void)m.receive_blocking(Channel{}, 5s);
                FAIL("no WorkerDied");
            } catch (const coproc::WorkerDied& e) {
                CHECK(e.status() == c.expected);
                CHECK(e.pid() == w.pid());
            }
            CHECK(m.receive_blocking("side", 1s) == 42);             // still receivable after the death
            CHECK_THROWS_AS(m.send_request(1), coproc::WorkerDied);  // never SIGPIPE
            CHECK(m.requests_sent() == 0);
            CHECK(w.exit_status() == c.expected);
            CHECK_FALSE(w.is_alive());
        }
    }
}

TEST_CASE("a worker dying while the host waits in await_available or receive_remaining", "[worker]") {
    IntWorker w(guarded([](coproc::PriorityMessenger<int>& m) {
        (void)m.receive_blocking();
        m.send_reply(1);
        ::_exit(9);
    }));
    auto& m = w.messenger();
    // Both requests in one write: the worker may answer the first and exit
    // before a second send could reach it (that send would raise WorkerDied).
    m.send_request_multiple(std::vector<int>{0, 0});
    std::vector<int> got;
    CHECK_THROWS_AS(
        [&] {
            for (int v : m.receive_remaining(Channel{}, 5s)) got.push_back(v);
        }(),
        coproc::WorkerDied);
    CHECK(got == std::vector<int>{1});
    CHECK_THROWS_AS(m.await_available(5s), coproc::WorkerDied);
}

namespace {
// Ends `grandchild` (which ends any wait on the worker's socket or exit pipe)
// if the test body has not finished 20 s after it started: then it hung.
class HangGuard {
public:
    explicit HangGuard(int grandchild)
        : thread_([this, grandchild] {
              std::unique_lock lock(mutex_);
              if (!changed_.wait_for(lock, 20s, [&] { return done_; })) fired_ = true;
              ::kill(grandchild, SIGKILL);
          }) {}
    ~HangGuard() { finish(); }
    bool finish() {
        {
            const std::lock_guard lock(mutex_);
            done_ = true;
        }
        changed_.notify_all();
        if (thread_.joinable()) thread_.join();
        return !fired_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool done_ = false;
    bool fired_ = false;
    std::thread thread_;
};

// Forks a grandchild that holds the worker's socket and exit pipe, reports
// its pid, then dies (`die`) or waits for the close request.
void fork_grandchild(coproc::PriorityMessenger<int>& m, bool die) {
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
        coproc::test::child_watchdog(60);
        for (;;) ::pause();
    }
    m.send_norequest(static_cast<int>(grandchild));
    if (die) ::kill(::getpid(), SIGKILL);
    for (;;) (void)m.receive_blocking();
}
}  // namespace

TEST_CASE("a worker whose socket a grandchild still holds: its death and its exit are still seen", "[worker]") {
    // The grandchild keeps the worker's end of the socket (and, without a
    // pidfd, the exit pipe) open, so the host never sees end of stream: only
    // the pidfd or a reap tells it the worker is gone.
    int grandchild = 0;
    SECTION("an untimed receive ends with WorkerDied") {
        IntWorker w(fork_grandchild, true);
        grandchild = w.messenger().receive_blocking(10s);
        HangGuard guard(grandchild);
        CHECK_THROWS_AS(w.messenger().receive_blocking(), coproc::WorkerDied);
        CHECK(guard.finish());
        CHECK(w.exit_status() == ExitStatus::killed_by(SIGKILL));
    }
    SECTION("a timed receive ends with WorkerDied, not Timeout") {
        IntWorker w(fork_grandchild, true);
        grandchild = w.messenger().receive_blocking(10s);
        HangGuard guard(grandchild);
        CHECK_THROWS_AS(w.messenger().receive_blocking(Channel{}, 15s), coproc::WorkerDied);
        CHECK(guard.finish());
    }
    SECTION("join ends") {
        IntWorker w(fork_grandchild, false);
        grandchild = w.messenger().receive_blocking(10s);
        HangGuard guard(grandchild);
        CHECK(w.join(15s) == ExitStatus::exited_with(0));
        CHECK(guard.finish());
    }
    SECTION("the destructor ends") {
        std::optional<HangGuard> guard;
        {
            IntWorker w(fork_grandchild, false);
            grandchild = w.messenger().receive_blocking(10s);
            guard.emplace(grandchild);
        }
        CHECK(guard->finish());
    }
    REQUIRE(grandchild > 0);
    ::kill(grandchild, SIGKILL);
    CHECK(coproc::test::wait_gone(grandchild, 10s));
}

TEST_CASE("a worker's own host end and its siblings' fds are closed in the child", "[worker]") {
    IntWorker first(echo);
    const int sibling_fd = first.messenger().fd();
    IntWorker second(guarded([](coproc::PriorityMessenger<int>&, int fd) {
                         return ::fcntl(fd, F_GETFD) == -1 ? 0 : 1;  // 0: closed, as it should be
                     }),
                     sibling_fd);
    CHECK(second.join(5s) == ExitStatus::exited_with(0));
}

TEST_CASE("a worker's own workers do not inherit its channel", "[worker]") {
    // Else the host would not see EOF when the middle worker dies while its
    // worker lives on. The middle worker passes its channel's fd numbers to
    // its own worker, which reports whether they are open there.
    IntWorker middle(guarded([](coproc::PriorityMessenger<int>& m) {
        const int channel = m.fd();
        IntWorker inner(guarded([](coproc::PriorityMessenger<int>& im, int fd) {
                            im.send_norequest(::fcntl(fd, F_GETFD) == -1 ? 0 : 1);  // 0: closed, as it should be
                            for (;;) (void)im.receive_blocking();
                        }),
                        channel);
        m.send_norequest(inner.messenger().receive_blocking(5s));
        for (;;) (void)m.receive_blocking();
    }));
    CHECK(middle.messenger().receive_blocking(10s) == 0);
    CHECK(middle.join(10s) == ExitStatus::exited_with(0));
}

void on_usr2(int) {}

TEST_CASE("the child gets default signal dispositions and an empty mask", "[worker]") {
    struct sigaction ignore {
    }, handle{};
    ignore.sa_handler = SIG_IGN;
    handle.sa_handler = &on_usr2;
    struct sigaction old_term {
    }, old_usr2{};
    ::sigaction(SIGTERM, &ignore, &old_term);
    ::sigaction(SIGUSR2, &handle, &old_usr2);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    IntWorker w(guarded([](coproc::PriorityMessenger<int>& m) {
        struct sigaction term {
        }, usr2{};
        ::sigaction(SIGTERM, nullptr, &term);
        ::sigaction(SIGUSR2, nullptr, &usr2);
        sigset_t mask;
        ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
        m.send_norequest(term.sa_handler == SIG_DFL ? 1 : 0);
        m.send_norequest(usr2.sa_handler == SIG_DFL ? 1 : 0);
        m.send_norequest(sigismember(&mask, SIGUSR1) ? 0 : 1);
        for (;;) (void)m.receive_blocking();
    }));
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGUSR2, &old_usr2, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    CHECK(w.messenger().receive_blocking(5s) == 1);            // SIGTERM: was ignored
    CHECK(w.messenger().receive_blocking(5s) == 1);            // SIGUSR2: had a handler
    CHECK(w.messenger().receive_blocking(5s) == 1);            // SIGUSR1: was blocked
    CHECK(w.terminate(5s) == ExitStatus::killed_by(SIGTERM));  // SIGTERM is not ignored in the child
}

TEST_CASE("kill() and terminate() reap; calls after the exit are harmless", "[worker]") {
    IntWorker w(echo);
    CHECK(w.kill() == ExitStatus::killed_by(SIGKILL));
    CHECK(w.kill() == ExitStatus::killed_by(SIGKILL));
    CHECK(w.terminate() == ExitStatus::killed_by(SIGKILL));
    CHECK(w.join(1s) == ExitStatus::killed_by(SIGKILL));
    CHECK(coproc::test::not_our_child(w.pid()));
}

TEST_CASE("WorkerResource is move-only and moves keep the worker", "[worker]") {
    static_assert(!std::is_copy_constructible_v<IntWorker>);
    static_assert(std::is_nothrow_move_constructible_v<IntWorker>);
    IntWorker a(echo);
    const long pid = a.pid();
    IntWorker b(std::move(a));
    b.messenger().send_request(3);
    CHECK(b.messenger().receive_blocking(5s) == 3);
    IntWorker c(echo);
    const long pid_c = c.pid();
    c = std::move(b);  // shuts c's old worker down first
    CHECK(c.pid() == pid);
    CHECK(coproc::test::not_our_child(pid_c));
    c.messenger().send_request(4);
    CHECK(c.messenger().receive_blocking(5s) == 4);
}

namespace {
// The first CPU this process may run on.
int first_cpu() {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(::sched_getaffinity(0, sizeof(set), &set) == 0);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(static_cast<std::size_t>(cpu), &set)) return cpu;
    return 0;
}
}  // namespace

TEST_CASE("WorkerLimits apply in a forked worker before its target runs", "[worker][limits]") {
    coproc::WorkerOptions options;
    options.limits.open_files = 64;
    options.limits.cpu_seconds = 100;
#if !defined(__SANITIZE_ADDRESS__)  // ASan's shadow memory reserves terabytes: no RLIMIT_AS under it
    options.limits.address_space_bytes = std::uint64_t{8} << 30;
#endif
    options.limits.nice = std::max(5, ::getpriority(PRIO_PROCESS, 0));
    options.limits.cpus = {first_cpu()};
    StrWorker w(options,
                [](coproc::MultiMessenger<std::string>& m) { m.send_norequest(coproc::test::limits_report()); });
    const std::string report = w.messenger().receive_blocking(10s);
    rlimit host_as{};
    REQUIRE(::getrlimit(RLIMIT_AS, &host_as) == 0);
    const std::string as = options.limits.address_space_bytes  ? std::to_string(*options.limits.address_space_bytes)
                           : host_as.rlim_cur == RLIM_INFINITY ? std::string("inf")
                                                               : std::to_string(host_as.rlim_cur);
    CHECK(report == fmt::format("nofile=64 cpu=100 as={} nice={} cpus={}", as, *options.limits.nice, first_cpu()));
    // The host itself is untouched.
    CHECK(coproc::test::limits_report() != report);
}

#if !defined(__SANITIZE_ADDRESS__)  // ASan's shadow memory reserves terabytes: no RLIMIT_AS under it
TEST_CASE("a worker over its address-space limit gets bad_alloc, which reaches the host", "[worker][limits]") {
    coproc::WorkerOptions options;
    options.limits.address_space_bytes = std::uint64_t{1} << 30;
    IntWorker w(options, [](coproc::PriorityMessenger<int>& m) {
        std::vector<char> big(std::size_t{2} << 30, 'x');  // 2 GiB: beyond the limit
        m.send_norequest(static_cast<int>(big.size()));
    });
    // std::bad_alloc cannot be rebuilt from a message: it arrives as a RemoteError naming it.
    try {
        (void)w.messenger().receive_blocking(10s);
        FAIL("no error arrived");
    } catch (const coproc::RemoteError& e) {
        CHECK_THAT(e.what(), Catch::Contains("std::bad_alloc"));
    }
}
#endif

TEST_CASE("limits that cannot be applied are a SpawnError naming them, before any fork", "[worker][limits]") {
    coproc::WorkerOptions options;
    options.limits.cpus = {CPU_SETSIZE - 1};  // no machine here lets us use CPU 1023
    CHECK_THROWS_WITH(StrWorker(options, [](coproc::MultiMessenger<std::string>&) {}),
                      Catch::Contains("WorkerLimits::cpus") && Catch::Contains("CPU 1023"));
    options.limits.cpus.clear();
    options.limits.nice = 25;
    CHECK_THROWS_WITH(StrWorker(options, [](coproc::MultiMessenger<std::string>&) {}),
                      Catch::Contains("WorkerLimits::nice = 25"));
}
