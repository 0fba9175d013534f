// Pool: futures, map, priorities, task errors, and supervision proven by
// fault injection (workers killed mid-task, poison tasks, hung tasks,
// restart intensity), shutdown, and no fd or zombie left behind.
#include <catch2/catch.hpp>

#include <coproc/pool.hpp>
#include <coproc/shared_value.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

using IntPool = coproc::Pool<int, int>;

// Every pool worker of these tests ends itself if a test hangs.
coproc::PoolOptions options(std::size_t workers) {
    coproc::PoolOptions o;
    o.workers = workers;
    o.initializer = [] { coproc::test::child_watchdog(60); };
    return o;
}

int square(const int& x) { return x * x; }

// Some CPU work, so a task is not over before the next call of the host.
int busy(const int& x) {
    volatile unsigned long spin = 0;
    for (int i = 0; i < 200'000; ++i) spin = spin + static_cast<unsigned long>(i);
    return x;
}

// Tasks that end their worker: -1 SIGKILL, -2 SIGSEGV, -3 abort, -4 _exit(3).
int crash_on_negative(const int& x) {
    switch (x) {
        case -1: ::raise(SIGKILL); break;
        case -2: ::raise(SIGSEGV); break;
        case -3: std::abort();
        case -4: ::_exit(3);
        default: break;
    }
    return x * 2;
}

// A task with a priority member, read as a message's is.
struct Job {
    int priority = 10;
    int id = 0;
    template <class A>
    void serialize(A& a) {
        a(priority, id);
    }
};

// Walks a map_unordered range to its end: ok(index, result) for each result,
// failed(exception_ptr) for each task that failed (advancing onto one
// throws; advancing again goes on: begin() again if begin() threw).
template <class Range, class Ok, class Failed>
void walk(Range& range, Ok&& ok, Failed&& failed) {
    bool first = true;
    decltype(range.begin()) it;
    for (;;) {
        try {
            if (first)
                it = range.begin();
            else
                ++it;
        } catch (...) {
            failed(std::current_exception());
            continue;
        }
        first = false;
        if (it == range.end()) return;
        ok(it->first, it->second);
    }
}

// True when no child of this process is left unreaped or running.
bool no_children() { return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD; }

}  // namespace

TEST_CASE("submit, get, map in input order, map_unordered as completed", "[pool]") {
    IntPool pool(square, options(2));
    CHECK(pool.size() == 2);
    auto f = pool.submit(7);
    CHECK(f.get(10s) == 49);
    std::vector<int> in(1000);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i);
    const auto out = pool.map(in);
    REQUIRE(out.size() == in.size());
    for (std::size_t i = 0; i < in.size(); ++i) CHECK(out[i] == in[i] * in[i]);
    std::set<std::size_t> seen;
    for (auto& [index, result] : pool.map_unordered(in, {.chunksize = 7})) {
        CHECK(result == in[index] * in[index]);
        CHECK(seen.insert(index).second);
    }
    CHECK(seen.size() == in.size());
    CHECK(pool.map(std::vector<int>{}).empty());
    const auto s = pool.stats();
    CHECK(s.submitted == 2001);
    CHECK(s.done == 2001);
    CHECK(s.failed == 0);
    CHECK(s.workers.size() == 2);
    CHECK(fmt::format("{}", s).rfind("PoolStats(submitted=2001, done=2001, failed=0", 0) == 0);
}

TEST_CASE("a task's exception fails that task only, with its C++ type; the worker keeps serving", "[pool]") {
    coproc::Pool<int, int> pool(
        [](const int& x) -> int {
            if (x == 3) throw std::invalid_argument("three is not allowed");
            return x;
        },
        options(1));
    auto bad = pool.submit(3);
    auto good = pool.submit(4);
    CHECK_THROWS_AS(bad.get(10s), std::invalid_argument);
    CHECK(good.get(10s) == 4);
    CHECK_THROWS_WITH(pool.map(std::vector<int>{1, 2, 3, 4}), "three is not allowed");
    CHECK(pool.stats().restarts == 0);
    CHECK(pool.stats().failed == 2);
}

TEST_CASE("an urgent task submitted late overtakes the pending background tasks", "[pool]") {
    coproc::SharedValue<int> started(0);  // shared with the workers (forked after it)
    coproc::SharedValue<int> gate(0);     // a task starts only once the test opens it
    auto opts = options(1);
    opts.window = 1;  // the worker holds two chunks: the one it runs and one more
    coproc::Pool<Job, int> pool(
        [started, gate](const Job&) {
            while (gate.atomic_load() == 0) std::this_thread::yield();
            return started.fetch_add(1);
        },
        opts);
    std::vector<coproc::Pool<Job, int>::Future> background;
    for (int i = 0; i < 20; ++i) background.push_back(pool.submit(Job{10, i}));
    auto urgent = pool.submit(Job{0, 99});
    gate.atomic_store(1);
    // Only the two chunks the worker held when it came run before it.
    CHECK(urgent.get(30s) == 2);
    std::vector<int> orders;
    for (auto& f : background) orders.push_back(f.get(30s));
    // Among equals, first come first served.
    CHECK(std::is_sorted(orders.begin(), orders.end()));
    // An explicit priority overrides the task's own: with the worker holding
    // two chunks, the two after them wait in the pool's queue.
    gate.atomic_store(0);
    auto first = pool.submit(Job{10, 1});
    auto second = pool.submit(Job{10, 2});
    auto later = pool.submit(Job{0, 3}, 50.0);
    auto sooner = pool.submit(Job{50, 4}, 0.0);
    gate.atomic_store(1);
    CHECK(first.get(30s) == 21);
    CHECK(second.get(30s) == 22);
    CHECK(sooner.get(30s) == 23);
    CHECK(later.get(30s) == 24);
}

TEST_CASE("a map waits in the queue at its priority; what it has left fails when the pool shuts down", "[pool]") {
    coproc::SharedValue<int> started(0);
    coproc::SharedValue<int> gate(0);
    auto opts = options(1);
    opts.window = 1;  // the worker holds two chunks: the one it runs and one more
    opts.worker.close_grace = 100ms;
    IntPool pool(
        [started, gate](const int&) {
            while (gate.atomic_load() == 0) std::this_thread::yield();
            return started.fetch_add(1);
        },
        opts);
    coproc::MapOptions background;
    background.chunksize = 1;
    background.priority = 10.0;
    auto range = pool.map_unordered(std::vector<int>(6, 0), background);
    auto urgent = pool.submit(0, 0.0);
    gate.atomic_store(1);
    // Only the two chunks the worker held when it came run before it.
    CHECK(urgent.get(30s) == 2);
    std::vector<int> orders;
    walk(
        range, [&](std::size_t, int order) { orders.push_back(order); },
        [](const std::exception_ptr&) { FAIL("a task of the map failed"); });
    std::sort(orders.begin(), orders.end());
    CHECK(orders == std::vector<int>{0, 1, 3, 4, 5, 6});
    // A map of which the worker holds two tasks and the queue the rest: all
    // fail at shutdown, each once.
    gate.atomic_store(0);
    auto left = pool.map_unordered(std::vector<int>(10, 0), {.chunksize = 1});
    pool.shutdown(false);
    std::size_t failed = 0;
    walk(
        left, [](std::size_t, int) { FAIL("a task ran after shutdown"); },
        [&](const std::exception_ptr& e) {
            CHECK_THROWS_WITH(std::rethrow_exception(e), Catch::Contains("shut down"));
            ++failed;
        });
    CHECK(failed == 10);
    CHECK(pool.stats().failed == 10);
}

TEST_CASE("workers that die mid-task (SIGKILL, SIGSEGV, abort, _exit) are replaced; the task is retried", "[pool]") {
    coproc::SharedArray<int> tried(5);  // runs per crash task, shared with the workers
    auto opts = options(2);
    opts.max_retries = 2;
    // Each crash task crashes on its first run only.
    coproc::Pool<int, int> pool(
        [tried](const int& x) {
            if (x < 0 && tried.fetch_add(static_cast<std::size_t>(-x), 1) == 0) return crash_on_negative(x);
            return x < 0 ? -x : x * 2;
        },
        opts);
    std::vector<coproc::Pool<int, int>::Future> futures;
    for (int x : {-1, 5, -2, 6, -3, 7, -4, 8}) futures.push_back(pool.submit(x));
    std::vector<int> results;
    for (auto& f : futures) results.push_back(f.get(30s));
    CHECK(results == std::vector<int>{1, 10, 2, 12, 3, 14, 4, 16});
    const auto s = pool.stats();
    CHECK(s.restarts == 4);
    CHECK(s.retried >= 4);
    CHECK(s.workers.size() == 2);
}

TEST_CASE("poison tasks fail with WorkerDied after their retries; the rest of the map succeeds", "[pool]") {
    auto opts = options(2);
    opts.max_retries = 2;
    opts.max_restarts = 100;
    coproc::Pool<int, int> pool(crash_on_negative, opts);
    std::vector<int> in;
    for (int i = 0; i < 200; ++i) in.push_back(i == 50 ? -1 : i == 150 ? -3 : i);
    std::size_t failed = 0;
    std::size_t ok = 0;
    auto range = pool.map_unordered(in, {.chunksize = 16});
    walk(
        range,
        [&](std::size_t index, int result) {
            CHECK(result == in[index] * 2);
            ++ok;
        },
        [&](std::exception_ptr e) {
            ++failed;
            try {
                std::rethrow_exception(e);
            } catch (const coproc::WorkerDied& died) {
                CHECK(died.status().signaled());
            }
        });
    CHECK(ok == 198);
    CHECK(failed == 2);
    // Each poison task: its first run and two retries, each a restart.
    CHECK(pool.stats().restarts == 6);
    CHECK(pool.stats().failed == 2);
}

TEST_CASE("chaos: 10,000 tasks through map while workers are killed at random; every result exact", "[pool]") {
    const unsigned seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    auto opts = options(2);
    opts.max_retries = 1000;
    opts.max_restarts = 100000;
    coproc::Pool<int, long> pool([](const int& x) { return static_cast<long>(x) * x + 1; }, opts);
    std::vector<int> in(10'000);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i);
    std::size_t kills = 0;
    std::size_t calls = 0;
    std::size_t last_done = 0;
    const auto out = pool.map(in, {.chunksize = 25, .progress = [&](const coproc::PoolProgress& p) {
                                       CHECK(p.total == in.size());
                                       CHECK(p.done >= last_done);  // never counted twice, never backwards
                                       last_done = p.done;
                                       ++calls;
                                       if (rng() % 8 != 0) return;
                                       const auto workers = pool.stats().workers;
                                       if (workers.empty()) return;
                                       ::kill(static_cast<pid_t>(workers[rng() % workers.size()].pid), SIGKILL);
                                       ++kills;
                                   }});
    REQUIRE(out.size() == in.size());
    for (std::size_t i = 0; i < in.size(); ++i) REQUIRE(out[i] == static_cast<long>(in[i]) * in[i] + 1);
    CHECK(calls == in.size());
    CHECK(kills > 0);
    const auto s = pool.stats();
    CHECK(s.done == in.size());
    CHECK(s.failed == 0);
    CHECK(s.restarts >= 1);
    WARN("chaos: " << kills << " kills, " << s.restarts << " restarts, " << s.retried << " task runs repeated");
}

TEST_CASE("restart intensity exceeded: the pool gives up promptly, every task fails with the exit statuses named",
          "[pool]") {
    auto opts = options(2);
    opts.max_retries = 1000;
    opts.max_restarts = 3;
    opts.restart_period = 60s;
    const auto start = std::chrono::steady_clock::now();
    coproc::Pool<int, int> pool(crash_on_negative, opts);
    std::vector<coproc::Pool<int, int>::Future> futures;
    for (int i = 0; i < 10; ++i) futures.push_back(pool.submit(i % 2 == 0 ? -1 : i));
    std::size_t gave_up = 0;
    for (auto& f : futures) {
        try {
            (void)f.get(30s);
        } catch (const coproc::PoolError& e) {
            CHECK_THAT(e.what(), Catch::Contains("gave up") && Catch::Contains("killed by signal 9"));
            ++gave_up;
        }
    }
    CHECK(gave_up >= 5);
    // Later tasks fail at once.
    CHECK_THROWS_AS(pool.submit(1).get(1s), coproc::PoolError);
    CHECK(std::chrono::steady_clock::now() - start < 30s);
}

TEST_CASE("a task past task_timeout fails with Timeout; its worker is replaced; the others succeed", "[pool]") {
    auto opts = options(1);
    opts.task_timeout = 300ms;
    coproc::Pool<int, int> pool(
        [](const int& x) {
            if (x == 0)
                for (;;) ::pause();  // hangs
            return x;
        },
        opts);
    auto hung = pool.submit(0);
    auto fine = pool.submit(5);
    CHECK_THROWS_AS(hung.get(30s), coproc::Timeout);
    CHECK(fine.get(30s) == 5);
    // The worker held both: the first kill cannot tell which one hung, so
    // each runs again alone, and the one that hangs is killed again.
    CHECK(pool.stats().restarts == 2);
    // In a map, the chunk is split and the hanging task times out alone.
    std::vector<int> in{1, 2, 0, 3};
    std::size_t timeouts = 0;
    std::set<std::size_t> done;
    auto range = pool.map_unordered(in, {.chunksize = 4});
    walk(
        range, [&](std::size_t index, int) { done.insert(index); },
        [&](std::exception_ptr e) {
            try {
                std::rethrow_exception(e);
            } catch (const coproc::Timeout&) {
                ++timeouts;
            }
        });
    CHECK(timeouts == 1);
    CHECK(done == std::set<std::size_t>{0, 1, 3});
}

TEST_CASE("cancel: a pending task is cancelled, a running one is not", "[pool]") {
    auto opts = options(1);
    opts.window = 1;
    coproc::Pool<int, int> pool(busy, opts);
    std::vector<coproc::Pool<int, int>::Future> futures;
    for (int i = 0; i < 10; ++i) futures.push_back(pool.submit(i));
    CHECK_FALSE(futures[0].cancel());  // the worker has it
    CHECK(futures[9].cancel());
    CHECK_FALSE(futures[9].cancel());  // once
    CHECK_THROWS_AS(futures[9].get(1s), coproc::TaskCancelled);
    for (int i = 0; i < 9; ++i) CHECK(futures[static_cast<std::size_t>(i)].get(30s) == i);
    CHECK(pool.stats().failed == 1);
}

TEST_CASE("initializer runs once in each worker before its tasks; its failure is a clear error", "[pool]") {
    static int initialized = 0;  // each worker's own copy
    auto opts = options(2);
    opts.initializer = [] {
        coproc::test::child_watchdog(60);
        ++initialized;
    };
    coproc::Pool<int, int> pool([](const int&) { return initialized; }, opts);
    const auto out = pool.map(std::vector<int>(50, 0));
    CHECK(std::all_of(out.begin(), out.end(), [](int n) { return n == 1; }));

    auto failing = options(2);
    failing.initializer = [] { throw std::runtime_error("no model file"); };
    CHECK_THROWS_WITH((coproc::Pool<int, int>(square, failing)),
                      Catch::Contains("initializer failed") && Catch::Contains("no model file"));
}

TEST_CASE("max_tasks_per_worker recycles workers without losing or repeating a task", "[pool]") {
    auto opts = options(2);
    opts.max_tasks_per_worker = 10;
    coproc::Pool<int, int> pool([](const int&) { return static_cast<int>(::getpid()); }, opts);
    const auto out = pool.map(std::vector<int>(200, 0), {.chunksize = 3});
    std::set<int> pids(out.begin(), out.end());
    CHECK(pids.size() >= 200 / 12);
    const auto s = pool.stats();
    CHECK(s.done == 200);
    CHECK(s.retried == 0);
    CHECK(s.restarts == 0);
    CHECK(s.recycled >= 200 / 12 - 2);
}

TEST_CASE("replacements are forked by the fork server, safe while the host runs threads", "[pool]") {
    auto opts = options(2);
    opts.max_retries = 5;
    opts.max_restarts = 1000;
    coproc::Pool<int, int> pool(crash_on_negative, opts);
    coproc::Pool<int, int> parents([](const int&) { return static_cast<int>(::getppid()); }, options(1));
    // From here on the host has two threads. A thread that takes and
    // releases the heap and stdio locks non-stop:
    std::atomic<bool> stop{false};
    std::thread noisy([&] {
        while (!stop) {
            std::vector<char> v(4096);
            std::fflush(stdout);
            v[0] = 1;
        }
    });
    std::vector<coproc::Pool<int, int>::Future> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(pool.submit(i % 4 == 0 ? -1 : i));
    std::size_t died = 0;
    for (auto& f : futures) {
        try {
            (void)f.get(30s);
        } catch (const coproc::WorkerDied&) {
            ++died;
        }
    }
    stop = true;
    noisy.join();
    CHECK(died == 5);  // each poison task, after its retries
    // Each poison task killed up to six workers (its runs); a death may count
    // a retry for several tasks a worker held, so some needed fewer.
    CHECK(pool.stats().restarts >= 5 * 5 + 1);
    CHECK(pool.stats().restarts <= 5 * 6);
    CHECK(parents.submit(0).get(10s) != static_cast<int>(::getpid()));  // the server's child, not ours
}

TEST_CASE("shutdown(wait) finishes the queue; shutdown without wait and the destructor fail what is left", "[pool]") {
    {
        IntPool pool(busy, options(1));
        std::vector<IntPool::Future> futures;
        for (int i = 0; i < 5; ++i) futures.push_back(pool.submit(i));
        pool.shutdown(true);
        for (int i = 0; i < 5; ++i) CHECK(futures[static_cast<std::size_t>(i)].get(1s) == i);
        CHECK_THROWS_AS(pool.submit(1).get(1s), coproc::PoolError);
    }
    std::vector<IntPool::Future> left;
    {
        auto opts = options(1);
        opts.window = 1;
        opts.worker.close_grace = 100ms;  // the worker never reads: SIGTERM ends it
        IntPool pool(
            [](const int&) -> int {
                for (;;) ::pause();  // no task ever finishes
            },
            opts);
        for (int i = 0; i < 5; ++i) left.push_back(pool.submit(i));
    }
    for (auto& f : left) CHECK_THROWS_WITH(f.get(1s), Catch::Contains("shut down"));
    CHECK(no_children());
}

TEST_CASE("100 pools created and destroyed leave no fd and no process behind", "[pool]") {
    const auto fds_before = coproc::test::open_fds();
    for (int i = 0; i < 100; ++i) {
        IntPool pool(square, options(2));
        if (i % 10 == 0) CHECK(pool.submit(i).get(10s) == i * i);
    }
    CHECK(coproc::test::open_fds() == fds_before);
    CHECK(no_children());
}

namespace {
// The spawn-mode tests' worker program (tests/spawn_worker.cpp) in `mode`.
coproc::Executable pool_program(const char* mode) {
    const char* path = std::getenv("COPROC_SPAWN_WORKER");
    REQUIRE(path != nullptr);
    return {path, {mode}};
}
coproc::PoolOptions spawn_options(std::size_t workers) {
    coproc::PoolOptions o;
    o.workers = workers;
    return o;  // the program arms its own watchdog
}
}  // namespace

TEST_CASE("spawn mode: a worker program serves the same API; poison tasks fail alone", "[pool][spawn]") {
    auto opts = spawn_options(2);
    opts.max_retries = 2;
    coproc::Pool<int, long> pool(pool_program("pool"), opts);
    CHECK(pool.submit(12).get(10s) == 144);
    std::vector<int> in;
    for (int i = 0; i < 300; ++i) in.push_back(i == 100 ? -1 : i);
    std::size_t failed = 0;
    std::size_t ok = 0;
    auto range = pool.map_unordered(in, {.chunksize = 10});
    walk(
        range,
        [&](std::size_t index, long result) {
            CHECK(result == static_cast<long>(in[index]) * in[index]);
            ++ok;
        },
        [&](std::exception_ptr e) {
            try {
                std::rethrow_exception(e);
            } catch (const coproc::WorkerDied& died) {
                CHECK(died.status().signal() == SIGKILL);
                ++failed;
            }
        });
    CHECK(ok == 299);
    CHECK(failed == 1);
    CHECK(pool.stats().restarts == 3);
}

TEST_CASE("spawn mode: max_tasks_per_worker recycles programs; initializer rules", "[pool][spawn]") {
    {
        auto opts = spawn_options(2);
        opts.max_tasks_per_worker = 5;
        coproc::Pool<int, long> pool(pool_program("pool-pid"), opts);
        const auto out = pool.map(std::vector<int>(60, 0), {.chunksize = 5});
        CHECK(std::set<long>(out.begin(), out.end()).size() == 12);
        CHECK(pool.stats().recycled >= 10);
        CHECK(pool.stats().restarts == 0);
    }
    CHECK_THROWS_WITH((coproc::Pool<int, long>(pool_program("pool-init-fails"), spawn_options(1))),
                      Catch::Contains("initializer failed") && Catch::Contains("no model file"));
    auto with_initializer = spawn_options(1);
    with_initializer.initializer = [] {};
    CHECK_THROWS_AS((coproc::Pool<int, long>(pool_program("pool"), with_initializer)), std::invalid_argument);
    // A program that is not a pool worker of these types.
    CHECK_THROWS_AS((coproc::Pool<int, long>(pool_program("echo"), spawn_options(1))), coproc::SpawnError);
    CHECK(no_children());
}

TEST_CASE("a pool's workers run under PoolOptions::worker.limits", "[pool][limits]") {
    auto opts = options(2);
    opts.worker.limits.open_files = 40;
    coproc::Pool<int, long> pool(
        [](const int&) {
            rlimit r{};
            (void)::getrlimit(RLIMIT_NOFILE, &r);
            return static_cast<long>(r.rlim_cur);
        },
        opts);
    const auto results = pool.map(std::vector<int>{1, 2, 3, 4});
    CHECK(results == std::vector<long>{40, 40, 40, 40});
    opts.worker.limits.nice = 99;
    CHECK_THROWS_WITH((coproc::Pool<int, long>([](const int& x) { return static_cast<long>(x); }, opts)),
                      Catch::Contains("WorkerLimits::nice = 99"));
}
