// Shared state: values, arrays and the key-value memory across worker
// processes, under contention, with holders and waiters that die.
#include <catch2/catch.hpp>

#include <coproc/shared_memory.hpp>
#include <coproc/shared_value.hpp>
#include <coproc/worker_resource.hpp>

#include <signal.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::ExitStatus;
using Messenger = coproc::MultiMessenger<int>;
using Worker = coproc::WorkerResource<Messenger>;

TEST_CASE("SharedValue: 4 processes x 100,000 locked increments give the exact total", "[shared]") {
    coproc::SharedValue<std::int64_t> counter(0);
    {
        std::vector<Worker> workers;
        for (int w = 0; w < 4; ++w)
            workers.emplace_back(
                [](Messenger&, coproc::SharedValue<std::int64_t> c) {
                    coproc::test::child_watchdog(60);
                    for (int i = 0; i < 100'000; ++i) {
                        std::lock_guard guard(c.get_lock());
                        c.value() += 1;  // a read and a write: only the lock makes it safe
                    }
                },
                counter);
        for (auto& w : workers) CHECK(w.join(60s).success());
    }
    CHECK(counter.load() == 400'000);
}

TEST_CASE("SharedValue atomics and SharedArray without a lock", "[shared]") {
    coproc::SharedValue<std::uint64_t> hits(0);
    coproc::SharedArray<double> slots(4, 0.0);
    coproc::SharedArray<int> marks(4, -1);  // locked forms only (never mixed with atomics on one element)
    CHECK(slots.size() == 4);
    {
        std::vector<Worker> workers;
        for (int w = 0; w < 4; ++w)
            workers.emplace_back(
                [](Messenger&, coproc::SharedValue<std::uint64_t> h, coproc::SharedArray<double> a,
                   coproc::SharedArray<int> m, int me) {
                    coproc::test::child_watchdog(60);
                    for (int i = 0; i < 20'000; ++i) {
                        h.fetch_add(1);
                        a.fetch_add(static_cast<std::size_t>(i % 4), 0.5);
                    }
                    m.store(static_cast<std::size_t>(me), me);
                },
                hits, slots, marks, w);
        for (auto& w : workers) CHECK(w.join(60s).success());
    }
    CHECK(hits.atomic_load() == 80'000);
    double sum = 0;
    for (double v : slots.span()) sum += v;
    CHECK(sum == 40'000.0);
    for (std::size_t i = 0; i < 4; ++i) CHECK(marks.load(i) == static_cast<int>(i));
    CHECK_THROWS_AS(slots.load(4), std::out_of_range);
}

TEST_CASE("SharedMemory: values, nested containers, keys, erase", "[shared]") {
    coproc::SharedMemory shared;
    using Nested = std::map<std::string, std::vector<std::map<int, std::string>>>;
    const Nested nested{{"a", {{{1, "one"}}, {}}}, {"b", {}}};
    shared.set("nested", nested);
    shared.set("n", 5);
    CHECK(shared.get<Nested>("nested") == nested);
    CHECK(shared.get<int>("n") == 5);
    CHECK(shared.get_or<int>("missing", 7) == 7);
    CHECK_THROWS_AS(shared.get<int>("missing"), std::out_of_range);
    CHECK(shared.contains("n"));
    CHECK(shared.keys() == std::vector<std::string>{"n", "nested"});
    CHECK(shared.size() == 2);
    CHECK(shared.erase("n"));
    CHECK_FALSE(shared.erase("n"));
    CHECK_FALSE(shared.contains("n"));
    // What a worker sets is what the host gets, nested values included.
    Worker w(
        [](Messenger&, coproc::SharedMemory m) {
            coproc::test::child_watchdog();
            auto v = m.get<Nested>("nested");
            v["c"].push_back({{3, "three"}});
            m.set("nested", v);
        },
        shared);
    CHECK(w.join(10s).success());
    CHECK(shared.get<Nested>("nested").at("c").at(0).at(3) == "three");
}

TEST_CASE("SharedMemory::update under 4-way contention loses nothing", "[shared]") {
    coproc::SharedMemory shared;
    {
        std::vector<Worker> workers;
        for (int w = 0; w < 4; ++w)
            workers.emplace_back(
                [](Messenger&, coproc::SharedMemory m) {
                    coproc::test::child_watchdog(60);
                    for (int i = 0; i < 5'000; ++i) m.update<long>("count", [](long& n) { ++n; });
                    for (int i = 0; i < 1'000; ++i)
                        m.update<std::vector<int>>("list", [](std::vector<int> v) {
                            v.push_back(1);
                            return v;
                        });
                },
                shared);
        for (auto& w : workers) CHECK(w.join(60s).success());
    }
    CHECK(shared.get<long>("count") == 20'000);
    CHECK(shared.get<std::vector<int>>("list").size() == 4'000);
}

TEST_CASE("preparers run exactly once with 8 workers racing", "[shared]") {
    coproc::SharedMemory shared;
    coproc::SharedValue<int> runs(0);
    shared.add_preparer([runs](coproc::SharedMemory& m) {
        runs.fetch_add(1);
        m.set("greeting", std::string("prepared"));
    });
    std::vector<Worker> workers;
    for (int w = 0; w < 8; ++w)
        workers.emplace_back(
            [](Messenger& m, coproc::SharedMemory s) {
                coproc::test::child_watchdog();
                (void)m.receive_blocking();  // the start signal: all eight go at once
                m.send_norequest(s.get<std::string>("greeting") == "prepared" ? 1 : 0);
            },
            shared);
    for (auto& w : workers) w.messenger().send_norequest(0);
    for (auto& w : workers) CHECK(w.messenger().receive_blocking(10s) == 1);
    CHECK(runs.atomic_load() == 1);
    CHECK(shared.get<std::string>("greeting") == "prepared");  // the host does not run it again
    CHECK(runs.atomic_load() == 1);
}

TEST_CASE("a holder killed mid-section: the next acquirer proceeds and is told", "[shared]") {
    coproc::SharedMemory shared;
    coproc::SharedValue<int> value(0);
    SECTION("named lock") {
        Worker w(
            [](Messenger& m, coproc::SharedMemory s) {
                coproc::test::child_watchdog();
                auto guard = s.lock("section");
                m.send_norequest(1);  // holding it
                for (;;) ::pause();
            },
            shared);
        REQUIRE(w.messenger().receive_blocking(10s) == 1);
        CHECK_FALSE(shared.try_lock_for("section", 10ms).has_value());  // really held
        CHECK(w.kill() == ExitStatus::killed_by(SIGKILL));
        auto guard = shared.try_lock_for("section", 5s);  // the kernel hands it over at once
        REQUIRE(guard.has_value());
        CHECK(guard->previous_owner_died());
        guard->unlock();
        CHECK_FALSE(shared.lock("section").previous_owner_died());  // told once
    }
    SECTION("SharedValue lock") {
        Worker w(
            [](Messenger& m, coproc::SharedValue<int> v) {
                coproc::test::child_watchdog();
                v.get_lock().lock();
                v.value() = 42;
                m.send_norequest(1);
                for (;;) ::pause();
            },
            value);
        REQUIRE(w.messenger().receive_blocking(10s) == 1);
        (void)w.kill();
        REQUIRE(value.get_lock().try_lock_for(5s));
        CHECK(value.get_lock().previous_owner_died());
        CHECK(value.value() == 42);
        value.get_lock().unlock();
    }
    SECTION("the store's own lock, killed inside update()") {
        Worker w(
            [](Messenger& m, coproc::SharedMemory s) {
                coproc::test::child_watchdog();
                s.update<int>("k", [&](int& n) {
                    n = 1;
                    m.send_norequest(1);
                    for (;;) ::pause();  // dies here, holding the store lock
                });
            },
            shared);
        REQUIRE(w.messenger().receive_blocking(10s) == 1);
        (void)w.kill();
        CHECK_FALSE(shared.contains("k"));  // the unfinished update changed nothing
        CHECK(shared.owner_deaths() == 1);
        shared.set("k", 2);
        CHECK(shared.get<int>("k") == 2);
    }
}

TEST_CASE("a waiter killed while waiting harms no one", "[shared]") {
    coproc::SharedMemory shared;
    auto held = shared.lock("busy");
    {
        Worker w(
            [](Messenger& m, coproc::SharedMemory s) {
                coproc::test::child_watchdog();
                m.send_norequest(1);
                auto guard = s.lock("busy");  // blocks: the host holds it
                m.send_norequest(2);
            },
            shared);
        REQUIRE(w.messenger().receive_blocking(10s) == 1);
        CHECK_THROWS_AS(w.messenger().receive_blocking(50ms), coproc::Timeout);  // still waiting
        (void)w.kill();
    }
    held.unlock();
    Worker next(
        [](Messenger& m, coproc::SharedMemory s) {
            coproc::test::child_watchdog();
            auto guard = s.lock("busy");
            m.send_norequest(guard.previous_owner_died() ? 0 : 3);
        },
        shared);
    CHECK(next.messenger().receive_blocking(10s) == 3);
}

TEST_CASE("components are isolated whatever characters keys and names contain", "[shared]") {
    coproc::SharedMemory shared;
    auto a = shared.component("a");
    auto ab = shared.component("a:b");
    auto a_b = shared.component("a").component("b");
    std::string nul("x\0y", 3);
    shared.set("a:b:c", 1);
    a.set("b:c", 2);
    ab.set("c", 3);
    a_b.set("c", 4);
    shared.component(nul).set(nul, 5);
    shared.component("x").set(std::string("\0yx\0y", 5), 6);
    CHECK(shared.get<int>("a:b:c") == 1);
    CHECK(a.get<int>("b:c") == 2);
    CHECK(ab.get<int>("c") == 3);
    CHECK(a_b.get<int>("c") == 4);
    CHECK(shared.component(nul).get<int>(nul) == 5);
    CHECK(shared.keys() == std::vector<std::string>{"a:b:c"});
    CHECK(a.keys() == std::vector<std::string>{"b:c"});
    CHECK_FALSE(a.contains("c"));
    // Named locks are per memory too: the same name in two components is two locks.
    auto g1 = a.lock("L");
    CHECK(ab.try_lock_for("L", 10ms).has_value());
    CHECK_FALSE(a.try_lock_for("L", 10ms).has_value());
}

TEST_CASE("a full memory throws CapacityError and stays intact", "[shared]") {
    coproc::SharedMemory shared(coproc::SharedMemoryOptions{.capacity = 64 * 1024});
    shared.set("keep", std::string("safe"));
    int stored = 0;
    bool full = false;
    for (int i = 0; i < 1000 && !full; ++i) {
        try {
            shared.set("big" + std::to_string(i), std::string(4000, 'x'));
            ++stored;
        } catch (const coproc::CapacityError&) {
            full = true;
        }
    }
    REQUIRE(full);
    CHECK(stored > 5);
    CHECK(shared.get<std::string>("keep") == "safe");
    CHECK_THROWS_AS(shared.update<std::string>("keep", [](std::string& s) { s.assign(100'000, 'y'); }),
                    coproc::CapacityError);
    CHECK(shared.get<std::string>("keep") == "safe");  // unchanged
    for (int i = 0; i < stored; ++i) CHECK(shared.get<std::string>("big" + std::to_string(i)).size() == 4000);
    CHECK(shared.erase("big0"));
    CHECK_NOTHROW(shared.set("again", std::string(3000, 'z')));
}
