// A worker's stdout and stderr, captured: stdout line by line into the
// host's own log with a prefix, stderr into a file. No reader thread: the
// lines are read while the host waits on the worker (receive, join, ...).
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

using namespace std::chrono_literals;
using Messenger = coproc::PriorityMessenger<int>;

// A worker that talks a lot: progress on stdout, a warning on stderr.
int sum_to(Messenger& m) {
    const int n = m.receive_blocking();
    long sum = 0;
    for (int i = 1; i <= n; ++i) {
        sum += i;
        if (i % 25 == 0) std::printf("progress: %d of %d\n", i, n);  // line-buffered: a lines sink
    }
    std::fprintf(stderr, "warning: %d is a small number\n", n);
    m.send_reply(static_cast<int>(sum));
    return 0;
}

int main() {
    const std::string log_path = fmt::format("/tmp/coproc-worker-output-{}.log", ::getpid());

    coproc::WorkerOptions options;
    // Each stdout line, on this thread, without its newline.
    options.std_out = coproc::OutputSink::lines([](std::string_view line) { fmt::print("[worker] {}\n", line); });
    // stderr: a file, created (or truncated) when the worker starts.
    options.std_err = coproc::OutputSink::file(log_path);

    {
        coproc::WorkerResource<Messenger> w(options, sum_to);
        w.messenger().send_request(100);
        // The progress lines are printed while we wait for the reply.
        const int sum = w.messenger().receive_blocking(coproc::Channel{}, 10s);
        fmt::print("sum: {}\n", sum);
        fmt::print("exit: {}\n", w.join(10s).code());
    }

    std::ifstream log(log_path);
    std::stringstream text;
    text << log.rdbuf();
    fmt::print("stderr file: {}", text.str());
    std::remove(log_path.c_str());
}
