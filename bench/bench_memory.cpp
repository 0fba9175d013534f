// Memory a messenger holds after traffic has passed, and what receive_blocking
// costs on a backlog against pop_from_queue, in one process (a pair of
// messengers, a sender thread where the socket would fill). Prints a table,
// then one JSON line (scripts/bench merges it).
//   rss_after_channels_mb   RSS growth after 100,000 channels of one message
//                           each, every message received (target <= 2)
//   rss_after_burst_mb      RSS growth after 10^6 queued ~120-byte messages
//                           were all popped (target <= 2)
//   backlog_receive_ratio   ns per receive_blocking / ns per pop_from_queue
//                           on a queued backlog (target <= 2)
#include <coproc/messenger.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Messenger = coproc::PriorityMessenger<std::string>;

namespace {

double rss_mb() {
    long pages = 0, resident = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// One message on each of `channels` channels, each received on its own channel.
double channels_growth(int channels) {
    auto [worker, host] = Messenger::new_pair();
    host.send_norequest("warm-up", "warm");
    (void)worker.receive_blocking("warm", 5s);
    const double before = rss_mb();
    for (int i = 0; i < channels; ++i) {
        const coproc::Channel ch(fmt::format("job-{}", i));
        host.send_request("a short message", ch);
        (void)worker.receive_blocking(ch, 5s);
        worker.send_reply("done", ch);
        (void)host.receive_blocking(ch, 5s);
    }
    return rss_mb() - before;
}

// `count` messages of ~120 bytes queued at once (a sender thread), then popped.
double burst_growth(int count) {
    auto [worker, host] = Messenger::new_pair();
    host.send_norequest("warm-up");
    (void)worker.receive_blocking(5s);
    const double before = rss_mb();
    std::thread sender([&h = host, count] {
        const std::string payload(100, 'x');
        std::vector<std::string> batch(64, payload);
        for (int sent = 0; sent < count; sent += 64) h.send_norequest_multiple(batch);
    });
    // Queue everything before popping anything: the burst is held in full.
    std::size_t queued = 0;
    while (queued < static_cast<std::size_t>(count)) queued = worker.available();
    sender.join();
    const double peak = rss_mb();
    while (worker.queue_size() > 0) (void)worker.pop_from_queue();
    const double after = rss_mb() - before;
    fmt::print("  burst of {} held {:.1f} MB at its peak\n", count, peak - before);
    return after;
}

// ns per message popping a queued backlog of `count`, either way.
double backlog_ns(int count, bool blocking) {
    auto [worker, host] = Messenger::new_pair();
    std::thread sender([&h = host, count] {
        std::vector<std::string> batch(64, std::string(16, 'y'));
        for (int sent = 0; sent < count; sent += 64) h.send_norequest_multiple(batch);
    });
    std::size_t queued = 0;
    while (queued < static_cast<std::size_t>(count)) queued = worker.available();
    sender.join();
    const auto start = Clock::now();
    if (blocking) {
        for (std::size_t i = 0; i < queued; ++i) (void)worker.receive_blocking();
    } else {
        for (std::size_t i = 0; i < queued; ++i) (void)worker.pop_from_queue();
    }
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()) /
           static_cast<double>(queued);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main() {
    const double channels = channels_growth(100000);
    fmt::print("RSS growth after 100,000 one-message channels: {:.2f} MB\n", channels);
    const double burst = burst_growth(1000000);
    fmt::print("RSS growth after a drained burst of 10^6 messages: {:.2f} MB\n", burst);
    std::vector<double> blocking, popping, ratios;
    for (int round = 0; round < 5; ++round) {
        const double b = backlog_ns(200000, true);
        const double p = backlog_ns(200000, false);
        blocking.push_back(b);
        popping.push_back(p);
        ratios.push_back(b / p);
    }
    fmt::print("backlog: receive_blocking {:.0f} ns, pop_from_queue {:.0f} ns per message (medians of 5)\n",
               median(blocking), median(popping));
    fmt::print(
        "{{\"rss_after_channels_mb\": {:.2f}, \"rss_after_burst_mb\": {:.2f}, \"backlog_receive_ratio\": {:.2f}}}\n",
        channels, burst, median(ratios));
}
