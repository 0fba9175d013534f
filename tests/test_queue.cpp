// Queues: FIFO per channel, priority order with +inf default and FIFO ties.
#include <catch2/catch.hpp>

#include <coproc/queue.hpp>

#include <algorithm>
#include <fmt/format.h>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

using coproc::Channel;

TEST_CASE("PriorityQueue returns 1,200 items of equal, ascending and repeated priorities in order", "[queue]") {
    // Python coproc's own test: 400 equal, 400 ascending, 400 repeated (10 values).
    std::vector<std::pair<double, int>> items;
    int id = 0;
    for (int i = 0; i < 400; ++i) items.emplace_back(5.0, id++);
    for (int i = 0; i < 400; ++i) items.emplace_back(static_cast<double>(i) - 200.0, id++);
    for (int i = 0; i < 400; ++i) items.emplace_back(static_cast<double>(i % 10), id++);
    std::mt19937 rng(42);
    std::vector<std::pair<double, int>> shuffled = items;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);

    coproc::PriorityQueue<std::pair<double, int>> q;
    for (const auto& item : shuffled) q.put(item, item.first);
    REQUIRE(q.size() == 1200);

    // Expected: stable sort of the insertion order by priority (FIFO among equals).
    std::vector<std::pair<double, int>> expected = shuffled;
    std::stable_sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::pair<double, int>> got;
    while (!q.empty()) got.push_back(q.get());
    CHECK(got == expected);
    CHECK_THROWS_AS(q.get(), std::out_of_range);
}

TEST_CASE("missing priority goes last, ties keep arrival order, NaN counts as +inf", "[queue]") {
    // Python reference §5: plainA, P(1)a, P(0), plainB, P(1)b, P(-5), P(-inf), P(+inf), P(0.0), None
    const double inf = std::numeric_limits<double>::infinity();
    coproc::PriorityQueue<std::string> q;
    q.put("plainA", inf);
    q.put("P1a", 1);
    q.put("P0", 0);
    q.put("plainB", inf);
    q.put("P1b", 1);
    q.put("P-5", -5);
    q.put("P-inf", -inf);
    q.put("P+inf", inf);
    q.put("P0.0", 0.0);
    q.put("None", inf);
    q.put("NaN", std::numeric_limits<double>::quiet_NaN());
    std::vector<std::string> got;
    while (!q.empty()) got.push_back(q.get());
    CHECK(got == std::vector<std::string>{"P-inf", "P-5", "P0", "P0.0", "P1a", "P1b", "plainA", "plainB", "P+inf",
                                          "None", "NaN"});
}

TEST_CASE("PriorityMultiQueue orders each channel independently", "[queue]") {
    coproc::PriorityMultiQueue<int> q;
    std::mt19937 rng(7);
    const std::vector<Channel> channels{Channel{}, Channel{1}, Channel{"jobs"}};
    std::vector<std::vector<std::pair<double, int>>> inserted(3);
    for (int i = 0; i < 300; ++i) {
        const auto c = static_cast<std::size_t>(i % 3);
        const double p = static_cast<double>(rng() % 7);
        q.put(i, p, channels[c]);
        inserted[c].emplace_back(p, i);
    }
    CHECK(q.total_size() == 300);
    for (std::size_t c = 0; c < 3; ++c) {
        auto expected = inserted[c];
        std::stable_sort(expected.begin(), expected.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        REQUIRE(q.size(channels[c]) == expected.size());
        for (const auto& [p, v] : expected) CHECK(q.get(channels[c]) == v);
        CHECK(q.empty(channels[c]));
    }
    // put + get per item round-trips
    for (int i = 0; i < 50; ++i) {
        q.put(i, 1.0, "x");
        CHECK(q.get("x") == i);
    }
    CHECK_THROWS_AS(q.get("never-used"), std::out_of_range);
}

TEST_CASE("MultiQueue is FIFO per channel and formats like coproc's repr", "[queue]") {
    coproc::MultiQueue<int> q;
    for (int i = 0; i < 10; ++i) q.put(i, i % 2 == 0 ? Channel{1} : Channel{"b"});
    q.put(99, 0.0, Channel{});  // priority ignored
    CHECK(q.size(1) == 5);
    CHECK(q.size("b") == 5);
    CHECK(fmt::format("{}", q) == "MultiQueue(queues={None: 1 message, 1: 5 messages, 'b': 5 messages})");
    for (int i = 0; i < 10; i += 2) CHECK(q.get(1) == i);
    for (int i = 1; i < 10; i += 2) CHECK(q.get("b") == i);
    CHECK(q.get() == 99);
    CHECK(q.empty(1));
    CHECK_THROWS_WITH(q.get(1), "Cannot pop from empty queue");
    CHECK(q.size("unknown") == 0);
}

TEST_CASE("Channel: none, integers and strings are distinct, ordered and formatted", "[queue]") {
    CHECK(Channel{} == Channel{nullptr});
    CHECK(Channel{1} != Channel{"1"});
    CHECK(Channel{} < Channel{-5});
    CHECK(Channel{100} < Channel{"a"});
    CHECK(fmt::format("{} {} {}", Channel{}, Channel{42}, Channel{"jobs"}) == "None 42 'jobs'");
    enum class Lane { a = 1, b = 2 };
    CHECK(Channel{Lane::b} == Channel{2});
    CHECK(std::hash<Channel>{}(Channel{"x"}) == std::hash<Channel>{}(Channel{std::string("x")}));
    CHECK_THROWS_AS(Channel{std::numeric_limits<std::uint64_t>::max()}, std::out_of_range);
}

TEST_CASE("a ring gives its memory back as it drains, and keeps order while it shrinks", "[queue][memory]") {
    coproc::detail::Ring<int> ring;
    for (int i = 0; i < 100000; ++i) ring.push_back(int{i});
    CHECK(ring.capacity() >= 100000);
    for (int i = 0; i < 99990; ++i) {
        REQUIRE(ring.front() == i);
        ring.pop_front();
    }
    // Ten left: it halved its way down while it drained.
    CHECK(ring.capacity() <= 64);
    for (int i = 99990; i < 100000; ++i) {
        REQUIRE(ring.front() == i);
        ring.pop_front();
    }
    CHECK(ring.capacity() <= coproc::detail::Ring<int>::reserve);
    // Wrapped around while shrinking: order still holds.
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 1000; ++i) ring.push_back(int{i});
        for (int i = 0; i < 700; ++i) ring.pop_front();
        for (int i = 1000; i < 1500; ++i) ring.push_back(int{i});
        for (int i = 700; i < 1500; ++i) {
            REQUIRE(ring.front() == i);
            ring.pop_front();
        }
    }
    CHECK(ring.empty());
}

TEMPLATE_TEST_CASE("emptied channels are forgotten beyond a few; a forgotten channel works as new", "[queue][memory]",
                   coproc::MultiQueue<int>, coproc::PriorityMultiQueue<int>) {
    TestType q;
    for (int job = 0; job < 10000; ++job) {
        const coproc::Channel ch(fmt::format("job-{}", job));
        q.put(job, 1.0, ch);
        q.put(job + 1, 0.0, ch);
        if (job % 2 == 0) {
            CHECK(q.get(ch) + q.get(ch) == 2 * job + 1);
        } else {
            q.pop(ch);
            q.pop(ch);
        }
    }
    CHECK(q.total_size() == 0);
    CHECK(q.channel_count() <= TestType::max_idle_channels);
    // Reused after it was forgotten: an ordinary new channel.
    q.put(5, 0.0, "job-3");
    CHECK(q.size("job-3") == 1);
    CHECK(q.get("job-3") == 5);
    CHECK_THROWS_AS(q.get("job-3"), std::out_of_range);
}

TEST_CASE("many distinct priorities cost one place each, and their buckets go when drained", "[queue][memory]") {
    coproc::PriorityQueue<int> q;
    for (int i = 1000; i > 0; --i) q.put(int{i}, static_cast<double>(i));
    CHECK(q.bucket_count() == 1000);
    for (int i = 1; i <= 1000; ++i) REQUIRE(q.get() == i);
    CHECK(q.bucket_count() <= 8);
    CHECK(q.empty());
    CHECK_THROWS_AS(q.get(), std::out_of_range);
}
