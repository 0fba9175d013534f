// Spawn mode: workers that are programs of their own (tests/spawn_worker.cpp,
// one program, many modes), started with posix_spawn: round trips, exit
// codes, errors and crashes, what crosses the exec (fds, signals, the
// environment), failures to start, hosts with busy threads, host death.
#include <catch2/catch.hpp>

#include <coproc/worker_main.hpp>
#include <coproc/worker_resource.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::ExitStatus;

namespace {

using M = coproc::PriorityMessenger<std::string>;
using Worker = coproc::WorkerResource<M>;

// meson passes the worker program's path (see tests/meson.build).
std::string worker_program() {
    const char* path = std::getenv("COPROC_SPAWN_WORKER");
    REQUIRE(path != nullptr);
    return path;
}

coproc::Executable program(std::string mode, std::vector<std::string> more = {}) {
    more.insert(more.begin(), std::move(mode));
    return {worker_program(), std::move(more)};
}

}  // namespace

TEST_CASE("a spawned worker answers requests; join gives its exit code", "[spawn]") {
    const auto fds_before = coproc::test::open_fds();
    long pid = 0;
    {
        Worker w(program("echo"));
        pid = w.pid();
        CHECK(w.is_alive());
        for (int i = 0; i < 100; ++i) {
            w.messenger().send_request("ping " + std::to_string(i));
            CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "ping " + std::to_string(i));
        }
        // Large payloads go through shared memory (memfds on the side
        // channel, fd 4 in the worker), both ways.
        const std::string big = coproc::test::pattern(std::size_t{4} << 20, 7);
        w.messenger().send_request(big);
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == big);
        CHECK(w.messenger().remaining() == 0);
        CHECK(w.join(10s) == ExitStatus::exited_with(0));  // the close request ends the echo loop
    }
    CHECK(coproc::test::not_our_child(pid));
    CHECK(coproc::test::open_fds() == fds_before);
}

TEST_CASE("Executable and WorkerResource format like coproc's reprs", "[spawn]") {
    CHECK(fmt::format("{}", coproc::Executable{"./square_worker", {"--fast", "2"}}) ==
          "Executable(path='./square_worker', args=['--fast', '2'])");
    CHECK(fmt::format("{}", coproc::Executable{"true", {}}) == "Executable(path='true', args=[])");
    CHECK(fmt::format("{}", coproc::Executable{"w", {}, {"A=1"}, "/tmp"}) ==
          "Executable(path='w', args=[], env=['A=1'], working_directory='/tmp')");
    Worker w(program("echo"));
    CHECK(fmt::format("{}", w) == fmt::format("WorkerResource(pid={}, messenger={})", w.pid(), w.messenger()));
    CHECK_THAT(fmt::format("{}", w),
               Catch::StartsWith("WorkerResource(pid=") && Catch::Contains("PriorityMessenger(fd="));
}

TEST_CASE("a spawned worker's int result is its exit code", "[spawn]") {
    Worker w(program("exit", {"7"}));
    CHECK(w.join(10s) == ExitStatus::exited_with(7));
}

TEST_CASE("an exception in a spawned worker reaches the host as the same type", "[spawn]") {
    Worker w(program("throw"));
    CHECK_THROWS_WITH(w.messenger().receive_blocking(coproc::Channel{}, 10s), "bad input, said the spawned worker");
    CHECK(w.join(10s) == ExitStatus::exited_with(1));
    Worker again(program("throw"));
    CHECK_THROWS_AS(again.messenger().receive_blocking(coproc::Channel{}, 10s), std::invalid_argument);
}

TEST_CASE("a crashing spawned worker is reported with its signal", "[spawn]") {
    Worker w(program("abort"));
    try {
        (void)w.messenger().receive_blocking(coproc::Channel{}, 10s);
        FAIL("receive_blocking returned");
    } catch (const coproc::WorkerDied& e) {
        CHECK(e.status() == ExitStatus::killed_by(SIGABRT));
    }
}

TEST_CASE("a program that cannot be started is a SpawnError, and leaves nothing behind", "[spawn]") {
    const auto fds_before = coproc::test::open_fds();
    SECTION("no such file") {
        try {
            Worker w(coproc::Executable{"/nonexistent/coproc-worker", {}});
            FAIL("the constructor returned");
        } catch (const coproc::SpawnError& e) {
            CHECK_THAT(e.what(), Catch::Contains("/nonexistent/coproc-worker") && Catch::Contains("No such file"));
        }
    }
    SECTION("not in PATH") {
        CHECK_THROWS_AS(Worker(coproc::Executable{"coproc-no-such-program", {}}), coproc::SpawnError);
    }
    SECTION("not a worker: it exits without its handshake") {
        try {
            Worker w(coproc::Executable{"true", {}});  // found in PATH
            FAIL("the constructor returned");
        } catch (const coproc::SpawnError& e) {
            CHECK_THAT(e.what(), Catch::Contains("'true'") && Catch::Contains("did not start"));
        }
    }
    SECTION("another message type: the handshake's fingerprint differs") {
        try {
            Worker w(program("int"));
            FAIL("the constructor returned");
        } catch (const coproc::SpawnError& e) {
            // Both types named: the host's std::string, the program's int.
            CHECK_THAT(e.what(), Catch::Contains("message type differs") && Catch::Contains("this side has") &&
                                     Catch::Contains("std::__cxx11::basic_string") && Catch::Contains("the peer int"));
        }
    }
    SECTION("a program that never answers: killed at start_timeout, and the message says so") {
        coproc::WorkerOptions options;
        options.start_timeout = std::chrono::milliseconds(300);
        try {
            Worker w(options, coproc::Executable{"sleep", {"30"}});
            FAIL("the constructor returned");
        } catch (const coproc::SpawnError& e) {
            CHECK_THAT(e.what(), Catch::Contains("'sleep'") &&
                                     Catch::Contains("no answer within start_timeout (300 ms), so it was killed"));
        }
    }
    CHECK(coproc::test::open_fds() == fds_before);
}

TEST_CASE("only 0, 1, 2 and its channel reach a spawned worker; signals are reset", "[spawn]") {
    // An fd the host leaks on purpose (no close-on-exec), an ignored and a
    // blocked signal: none of it may reach the worker.
    const int leaked = ::open("/dev/null", O_RDONLY);  // NOLINT: no O_CLOEXEC, on purpose
    REQUIRE(leaked >= 0);
    struct sigaction ignore {
    }, old_usr1{};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGUSR1, &ignore, &old_usr1) == 0);
    sigset_t usr2, old_mask;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &usr2, &old_mask) == 0);

    std::string got;
    {
        coproc::WorkerOptions options;
        options.parent_death_signal = SIGTERM;
        Worker w(options, program("report"));
        got = w.messenger().receive_blocking(coproc::Channel{}, 10s);
    }
    (void)::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    (void)::sigaction(SIGUSR1, &old_usr1, nullptr);
    ::close(leaked);
    // 3 and 4: the stream and its descriptor side channel; 5: the exit pipe,
    // where the host watches its workers without pidfds.
    const std::string fds = coproc::detail::pidfd_supported() ? "0,1,2,3,4" : "0,1,2,3,4,5";
    CHECK(got == fmt::format("fds={} env=unset usr1=default mask=empty pdeathsig={}", fds, SIGTERM));
}

TEST_CASE("a spawned worker's environment and working directory", "[spawn]") {
    SECTION("added and replaced variables, another directory") {
        coproc::Executable p = program("where");
        p.env = {"COPROC_TEST_VAR=42", "HOME=/nowhere"};
        p.working_directory = "/tmp";
        Worker w(p);
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "/tmp 42 /nowhere");
    }
    SECTION("by default, the host's") {
        char cwd[4096];
        REQUIRE(::getcwd(cwd, sizeof cwd) != nullptr);
        const char* home = std::getenv("HOME");
        Worker w(program("where"));
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) ==
              fmt::format("{} unset {}", cwd, home != nullptr ? home : "unset"));
    }
    SECTION("bad entries and directories are refused") {
        const auto fds_before = coproc::test::open_fds();
        coproc::Executable p = program("where");
        p.env = {"NO_EQUALS_SIGN"};
        CHECK_THROWS_AS(Worker(p), std::invalid_argument);
        p.env = {"COPROC_WORKER=1:1:0:-1:1:0:0"};
        CHECK_THROWS_AS(Worker(p), std::invalid_argument);
        p.env = {};
        p.working_directory = "/nonexistent/coproc-dir";
        CHECK_THROWS_WITH(Worker(p), Catch::Contains("in '/nonexistent/coproc-dir'"));
        CHECK(coproc::test::open_fds() == fds_before);
    }
}

TEST_CASE("a spawned worker's messenger has the host's options unless it brings its own", "[spawn]") {
    coproc::WorkerOptions options;
    options.messenger.max_frame_size = std::size_t{5} << 20;
    {
        Worker w(options, program("options"));
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == std::to_string(std::size_t{5} << 20));
    }
    {
        Worker w(options, program("own-options"));
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == std::to_string(std::size_t{3} << 20));
    }
}

TEST_CASE("a spawned worker's stdout is the host's, unbuffered by nothing of the host", "[spawn]") {
    Worker w(program("stdout"));
    CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "printed");
    CHECK(w.join(10s).success());
}

TEST_CASE("spawning from a host whose other threads hold locks or allocate", "[spawn]") {
    // A forked worker would inherit these states: the stdout lock held for
    // good (fork mode's own flush of stdio would wait for it), malloc busy in
    // another thread. A spawned one shares none of it.
    std::mutex mutex;
    std::condition_variable changed;
    bool locked = false, release = false;
    std::thread holder([&] {
        ::flockfile(stdout);
        {
            std::unique_lock lock(mutex);
            locked = true;
            changed.notify_all();
            changed.wait(lock, [&] { return release; });
        }
        ::funlockfile(stdout);
    });
    std::atomic<bool> stop{false};
    std::thread allocator([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            std::vector<std::string> v(64, std::string(100, 'x'));
            asm volatile("" : : "r"(v.data()) : "memory");
        }
    });
    {
        std::unique_lock lock(mutex);
        REQUIRE(changed.wait_for(lock, 10s, [&] { return locked; }));
    }
    // Nothing is reported while stdout is locked (Catch2 prints failures to
    // it): results are kept, and checked once the lock is released.
    std::vector<std::string> answers;
    std::vector<ExitStatus> statuses;
    std::string error;
    try {
        for (int i = 0; i < 8; ++i) {
            Worker w(program("echo"));
            w.messenger().send_request("from a busy host");
            answers.push_back(w.messenger().receive_blocking(coproc::Channel{}, 10s));
            statuses.push_back(w.join(10s));
        }
    } catch (const std::exception& e) {
        error = e.what();
    }
    {
        const std::lock_guard lock(mutex);
        release = true;
    }
    changed.notify_all();
    stop = true;
    holder.join();
    allocator.join();
    CHECK(error.empty());
    CHECK(answers == std::vector<std::string>(8, "from a busy host"));
    CHECK(statuses == std::vector<ExitStatus>(8, ExitStatus::exited_with(0)));
}

TEST_CASE("a spawned worker can spawn workers of its own", "[spawn]") {
    Worker w(program("nested"));
    w.messenger().send_request("hello");
    CHECK(w.messenger().receive_blocking(coproc::Channel{}, 20s) == "hello via a nested worker");
    CHECK(w.join(20s) == ExitStatus::exited_with(0));
}

TEST_CASE("a spawned worker dies with its host (parent-death signal)", "[spawn]") {
    // Orphans are re-parented to this process, so the worker can be reaped
    // here (for this test only, whatever fails in it).
    struct Subreaper {
        Subreaper() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
        ~Subreaper() { (void)::prctl(PR_SET_CHILD_SUBREAPER, 0); }
    } subreaper;
    int report[2];
    REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
    const std::string path = worker_program();
    const pid_t host = ::fork();
    REQUIRE(host >= 0);
    if (host == 0) {
        coproc::test::child_watchdog(30);
        try {
            Worker w(coproc::Executable{path, {"busy"}});  // never reads: only the signal can end it
            const long pid = w.pid();
            (void)!::write(report[1], &pid, sizeof pid);
            for (;;) ::pause();  // until the test kills us
        } catch (...) {
        }
        ::_exit(1);
    }
    ::close(report[1]);
    long worker = 0;
    const bool got = ::read(report[0], &worker, sizeof worker) == static_cast<ssize_t>(sizeof worker);
    ::close(report[0]);
    REQUIRE(got);
    const coproc::detail::UniqueFd pidfd(::pidfd_open(static_cast<pid_t>(worker), 0));
    REQUIRE(pidfd);
    REQUIRE(::kill(host, SIGKILL) == 0);
    REQUIRE(::waitpid(host, nullptr, 0) == host);
    pollfd p{pidfd.get(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10'000) == 1);  // the worker exited (SIGKILL, the default death signal)
    siginfo_t info{};
    CHECK(::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED) == 0);
    CHECK(info.si_code == CLD_KILLED);
    CHECK(info.si_status == SIGKILL);
}

namespace {
// Runs `f` with fd 2 going to a temporary file; returns what was written there.
template <class F>
std::string capture_stderr(F&& f) {
    std::FILE* tmp = std::tmpfile();
    REQUIRE(tmp != nullptr);
    std::fflush(stderr);
    const int saved = ::dup(2);
    ::dup2(::fileno(tmp), 2);
    f();
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::string text;
    std::rewind(tmp);
    for (int c = std::fgetc(tmp); c != EOF; c = std::fgetc(tmp)) text += static_cast<char>(c);
    std::fclose(tmp);
    return text;
}
}  // namespace

TEST_CASE("worker_main refuses to run in a program no host started: one line, exit code 2", "[spawn]") {
    bool ran = false;
    ::unsetenv("COPROC_WORKER");
    int code = -1;
    std::string said = capture_stderr([&] { code = coproc::worker_main<M>([&ran](M&) { ran = true; }); });
    CHECK(code == 2);
    CHECK_FALSE(ran);
    CHECK(said.find("not started by a coproc::WorkerResource") != std::string::npos);
    CHECK(std::count(said.begin(), said.end(), '\n') == 1);
    ::setenv("COPROC_WORKER", "not what a host writes", 1);
    said = capture_stderr([&] { code = coproc::worker_main<M>([&ran](M&) { ran = true; }); });
    CHECK(code == 2);
    CHECK(said.find("malformed") != std::string::npos);
    const auto is_socket = [](int fd) {
        struct stat st {};
        return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    };
    if (!is_socket(3) || !is_socket(4)) {  // as in any program not started by a host
        ::setenv("COPROC_WORKER", fmt::format("1:{}:0:-1:{}:0:0", ::getppid(), 1 << 20).c_str(), 1);
        said = capture_stderr([&] { code = coproc::worker_main<M>([&ran](M&) { ran = true; }); });
        CHECK(code == 2);
        CHECK(said.find("not the worker's socket") != std::string::npos);
    }
    ::unsetenv("COPROC_WORKER");
    CHECK_FALSE(ran);
}

TEST_CASE("a worker program run by hand prints one line and exits 2, no core dump", "[spawn]") {
    for (const char* mode : {"echo", "pool"}) {
        const std::string command = "env -u COPROC_WORKER '" + worker_program() + "' " + mode + " 2>&1";
        std::FILE* out = ::popen(command.c_str(), "r");
        REQUIRE(out != nullptr);
        std::string text;
        for (int c = std::fgetc(out); c != EOF; c = std::fgetc(out)) text += static_cast<char>(c);
        const int status = ::pclose(out);
        INFO(mode << ": " << text);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 2);
        CHECK(std::count(text.begin(), text.end(), '\n') == 1);
        CHECK(text.find("coproc worker program") != std::string::npos);
    }
}

TEST_CASE("WorkerLimits apply in a spawned worker too", "[spawn][limits]") {
    coproc::WorkerOptions options;
    options.limits.open_files = 48;
    options.limits.cpu_seconds = 90;
    options.limits.nice = std::max(3, ::getpriority(PRIO_PROCESS, 0));
    Worker w(options, program("limits"));
    const std::string report = w.messenger().receive_blocking(10s);
    CHECK_THAT(report,
               Catch::StartsWith("nofile=48 cpu=90 ") && Catch::Contains(fmt::format("nice={}", *options.limits.nice)));
    // And the variable that carried them is gone from its environment.
    Worker w2(program("report"));
    CHECK_THAT(w2.messenger().receive_blocking(10s), Catch::Contains("env=unset"));
}
