// Where a worker's stdout and stderr go (coproc/worker_output.hpp): lines
// sinks read on the host's waits (no deadlock when the worker writes more
// than a pipe holds, while the host receives, sends or joins), files,
// /dev/null, spawn mode and pools, and the errors for bad sinks.
#include <catch2/catch.hpp>

#include <coproc/pool.hpp>
#include <coproc/worker_resource.hpp>

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

using M = coproc::PriorityMessenger<std::string>;
using Worker = coproc::WorkerResource<M>;

// A line the sanitizer runtime wrote on a worker's stderr ("==PID==..."; in
// an ASan build only: LeakSanitizer may report, at a worker's exit, a thread
// it could not stop). Not the worker's output: the checks skip it.
bool sanitizer_line(std::string_view line) {
#if defined(__SANITIZE_ADDRESS__)
    if (!line.starts_with("==")) return false;
    const auto end = line.find("==", 2);
    return end != std::string_view::npos && end > 2 &&
           line.substr(2, end - 2).find_first_not_of("0123456789") == std::string_view::npos;
#else
    (void)line;
    return false;
#endif
}

// The lines a sink delivered, in order.
struct Lines {
    std::vector<std::string> got;
    coproc::OutputSink sink() {
        return coproc::OutputSink::lines([this](std::string_view line) {
            if (!sanitizer_line(line)) got.emplace_back(line);
        });
    }
};

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A file name of this test run's own, removed at the end of the test.
struct TempFile {
    std::string path;
    explicit TempFile(const char* name)
        : path(fmt::format("{}/coproc-output-{}-{}", std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp",
                           ::getpid(), name)) {}
    ~TempFile() { (void)std::remove(path.c_str()); }
};

// This process's pipe and epoll fds above 2, as "fd:target" words.
std::string pipes_and_polls() {
    std::string found;
    for (int fd : coproc::test::open_fds()) {
        if (fd <= 2) continue;
        char target[128] = {};
        const auto path = fmt::format("/proc/self/fd/{}", fd);
        if (::readlink(path.c_str(), target, sizeof target - 1) < 0) continue;
        const std::string t = target;
        if (t.starts_with("pipe:") || t == "anon_inode:[eventpoll]") found += fmt::format("{}:{} ", fd, t);
    }
    return found;
}

coproc::Executable spawn_program(const char* mode) {
    const char* path = std::getenv("COPROC_SPAWN_WORKER");
    REQUIRE(path != nullptr);
    return {path, {mode}};
}

}  // namespace

TEST_CASE("a lines sink gets stdout and stderr line by line, a last line without newline at exit", "[output]") {
    Lines out, err;
    coproc::WorkerOptions o;
    o.std_out = out.sink();
    o.std_err = err.sink();
    {
        Worker w(o, [](M& m) {
            coproc::test::child_watchdog();
            std::printf("one\n");                   // C stdio: line-buffered for a lines sink
            std::cout << "two" << std::endl;        // iostreams
            std::fprintf(stderr, "problem one\n");  // stderr: unbuffered
            (void)!::write(1, "three\n\nfour", 11);
            m.send_norequest("printed");
            (void)m.receive_blocking();
        });
        // Every line written before the message is delivered by the time
        // the receive returns it; the last one has no newline yet.
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "printed");
        CHECK(out.got == std::vector<std::string>{"one", "two", "three", ""});
        CHECK(err.got == std::vector<std::string>{"problem one"});
        CHECK(w.join(10s).code() == 0);
    }
    CHECK(out.got == std::vector<std::string>{"one", "two", "three", "", "four"});
    CHECK(err.got == std::vector<std::string>{"problem one"});
}

TEST_CASE("a worker writing far more than a pipe holds never blocks a host that receives, sends or joins", "[output]") {
    constexpr int count = 200'000;  // ~9 MB: several times any pipe
    Lines out;
    std::size_t bytes = 0;
    coproc::WorkerOptions o;
    o.std_out = coproc::OutputSink::lines([&](std::string_view line) {
        out.got.emplace_back(line.substr(0, 12));
        bytes += line.size() + 1;
    });
    Worker w(o, [](M& m) {
        coproc::test::child_watchdog();
        const std::string filler(32, 'x');
        for (int i = 0; i < count; ++i) std::printf("line %06d %s\n", i, filler.c_str());
        std::fflush(stdout);
        m.send_norequest("printed");
        // Then it takes a stream the host sends (the host's sends wait on a
        // full socket while this worker prints again).
        for (int i = 0; i < 300; ++i) (void)m.receive_blocking();
        for (int i = 0; i < count; ++i) std::printf("again %06d %s\n", i, filler.c_str());
        std::fflush(stdout);
        m.send_norequest("done");
        (void)m.receive_blocking();
    });
    CHECK(w.messenger().receive_blocking(coproc::Channel{}, 60s) == "printed");
    REQUIRE(out.got.size() == count);
    CHECK(out.got.front() == "line 000000 ");
    CHECK(out.got.back() == "line 199999 ");
    const std::string block(32 * 1024, 'b');
    for (int i = 0; i < 300; ++i) w.messenger().send_norequest(block);
    CHECK(w.messenger().receive_blocking(coproc::Channel{}, 60s) == "done");
    CHECK(w.join(30s).code() == 0);
    CHECK(out.got.size() == 2 * count);
    CHECK(out.got.back() == "again 199999");
    CHECK(bytes == static_cast<std::size_t>(count) * (45 + 46));  // "line " and "again " lines
}

TEST_CASE("what a worker printed as it died is delivered before the WorkerDied exception", "[output]") {
    Lines err;
    coproc::WorkerOptions o;
    o.std_err = err.sink();
    Worker w(o, [](M&) {
        std::fprintf(stderr, "out of patience\n");
        std::abort();
    });
    std::size_t lines_when_thrown = 0;
    try {
        (void)w.messenger().receive_blocking(coproc::Channel{}, 10s);
        FAIL("no exception");
    } catch (const coproc::WorkerDied&) {
        lines_when_thrown = err.got.size();
    }
    CHECK(lines_when_thrown == 1);
    REQUIRE(!err.got.empty());
    CHECK(err.got.front() == "out of patience");
}

TEST_CASE("an event loop watches output_fd() and calls pump_output()", "[output]") {
    Lines out;
    coproc::WorkerOptions o;
    o.std_out = out.sink();
    Worker w(o, [](M& m) {
        coproc::test::child_watchdog();
        (void)m.receive_blocking();  // "go": no wait of the host's can see the line first
        std::printf("ready\n");
        (void)m.receive_blocking();
    });
    REQUIRE(w.output_fd() >= 0);
    w.messenger().send_norequest("go");
    std::size_t pumped = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (pumped == 0 && std::chrono::steady_clock::now() < deadline) {
        pollfd p{w.output_fd(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 10'000) == 1);
        pumped += w.pump_output();
    }
    CHECK(pumped == 1);
    CHECK(out.got == std::vector<std::string>{"ready"});
    CHECK(w.join(10s).code() == 0);
    CHECK(w.output_fd() == -1);  // all delivered
}

TEST_CASE("file sinks truncate or append; discard is /dev/null", "[output]") {
    TempFile log("file");
    {
        std::ofstream(log.path) << "old content\n";
        coproc::WorkerOptions o;
        o.std_out = coproc::OutputSink::file(log.path);
        o.std_err = coproc::OutputSink::discard();
        Worker w(o, [](M& m) {
            std::printf("first\n");
            std::fprintf(stderr, "to nowhere\n");
            char target[64] = {};
            (void)!::readlink("/proc/self/fd/2", target, sizeof target - 1);
            m.send_norequest(target);
        });
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "/dev/null");
        CHECK(w.join(10s).code() == 0);
    }
    CHECK(read_file(log.path) == "first\n");
    {
        coproc::WorkerOptions o;
        o.std_out = coproc::OutputSink::file(log.path, true);
        Worker w(o, [](M&) { std::printf("second\n"); });
        CHECK(w.join(10s).code() == 0);
    }
    CHECK(read_file(log.path) == "first\nsecond\n");
}

TEST_CASE("a spawned worker's stdout and stderr go to the sinks too", "[output][spawn]") {
    Lines out, err;
    coproc::WorkerOptions o;
    o.std_out = out.sink();
    o.std_err = err.sink();
    {
        Worker w(o, spawn_program("stdout-stderr"));
        CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "printed");
        CHECK(w.join(10s).code() == 0);
    }
    CHECK(out.got == std::vector<std::string>{"out one", "out two"});
    CHECK(err.got == std::vector<std::string>{"err one"});
}

TEST_CASE("a spawned worker's stdout to a lines sink is line-buffered: a line comes before the next message",
          "[output][spawn]") {
    Lines out;
    coproc::WorkerOptions o;
    o.std_out = out.sink();
    Worker w(o, spawn_program("stdout-unflushed"));
    CHECK(w.messenger().receive_blocking(coproc::Channel{}, 10s) == "printed");
    CHECK(out.got == std::vector<std::string>{"not flushed"});  // before the worker exits
    CHECK(w.join(10s).code() == 0);
}

TEST_CASE("a pool's workers, forked or spawned, all append to one file sink", "[output][pool]") {
    TempFile out_log("pool-out");
    TempFile err_log("pool-err");
    std::vector<int> tasks;
    for (int i = 0; i < 40; ++i) tasks.push_back(i);
    auto expect_lines = [&](const std::string& text, const char* prefix) {
        std::vector<std::string> lines;
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
            if (!sanitizer_line(line)) lines.push_back(line);
        std::sort(lines.begin(), lines.end());
        std::vector<std::string> want;
        for (int i : tasks) want.push_back(fmt::format("{} {}", prefix, i));
        std::sort(want.begin(), want.end());
        CHECK(lines == want);
    };
    coproc::PoolOptions o;
    o.workers = 3;
    o.worker.std_out = coproc::OutputSink::file(out_log.path);
    o.worker.std_err = coproc::OutputSink::file(err_log.path);
    SECTION("forked") {
        o.initializer = [] { coproc::test::child_watchdog(60); };
        coproc::Pool<int, long> pool(
            [](const int& x) -> long {
                std::printf("task %d\n", x);
                std::fflush(stdout);
                std::fprintf(stderr, "err %d\n", x);
                return static_cast<long>(x) * x;
            },
            o);
        CHECK(pool.map(tasks).size() == tasks.size());
    }
    SECTION("spawned") {
        coproc::Pool<int, long> pool(spawn_program("pool-print"), o);
        CHECK(pool.map(tasks).size() == tasks.size());
    }
    expect_lines(read_file(out_log.path), "task");
    expect_lines(read_file(err_log.path), "err");
}

TEST_CASE(
    "bad sinks: an unopenable file is a SpawnError naming it; a lines sink without a callback, or in a pool, "
    "is invalid_argument",
    "[output]") {
    const auto fds_before = coproc::test::open_fds();
    coproc::WorkerOptions o;
    o.std_out = coproc::OutputSink::file("/nonexistent-dir/out.log");
    try {
        Worker w(o, [](M&) {});
        FAIL("no exception");
    } catch (const coproc::SpawnError& e) {
        CHECK_THAT(e.what(), Catch::Contains("std_out") && Catch::Contains("/nonexistent-dir/out.log"));
    }
    o.std_out = coproc::OutputSink::lines(nullptr);
    CHECK_THROWS_AS(Worker(o, [](M&) {}), std::invalid_argument);
    o.std_out = coproc::OutputSink::file("");
    CHECK_THROWS_AS(Worker(o, [](M&) {}), std::invalid_argument);
    coproc::PoolOptions p;
    p.workers = 1;
    p.worker.std_err = coproc::OutputSink::lines([](std::string_view) {});
    CHECK_THROWS_AS((coproc::Pool<int, long>([](const int& x) -> long { return x; }, p)), std::invalid_argument);
    CHECK(coproc::test::open_fds() == fds_before);
}

TEST_CASE("no fd of a worker's output is left behind, and siblings do not hold its pipe", "[output]") {
    const auto fds_before = coproc::test::open_fds();
    const std::string inherited = pipes_and_polls();
    Lines a_out;
    coproc::WorkerOptions o;
    o.std_out = a_out.sink();
    {
        Worker a(o, [](M& m) {
            coproc::test::child_watchdog();
            (void)m.receive_blocking();
        });
        // A sibling forked while `a` runs holds no pipe or epoll fd but
        // those this test process itself inherited.
        Worker b([](M& m) {
            coproc::test::child_watchdog();
            m.send_norequest(pipes_and_polls());
            (void)m.receive_blocking();
        });
        CHECK(b.messenger().receive_blocking(coproc::Channel{}, 10s) == inherited);
    }
    CHECK(coproc::test::open_fds() == fds_before);
}
