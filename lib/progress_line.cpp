// The terminal progress line (see progress_line.hpp).
#include "coproc/progress_line.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include <fmt/format.h>

namespace coproc {

struct ProgressLine::State {
    std::string label;
    bool terminal = false;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last_draw{};
};

ProgressLine::ProgressLine(std::string label) : state_(std::make_shared<State>()) {
    state_->label = std::move(label);
    state_->terminal = ::isatty(STDERR_FILENO) == 1;
}

void ProgressLine::operator()(const PoolProgress& p) const noexcept {
    State& s = *state_;
    if (!s.terminal) return;
    const auto now = std::chrono::steady_clock::now();
    const bool last = p.done + p.failed >= p.total;
    if (!last && now - s.last_draw < std::chrono::milliseconds(100)) return;
    s.last_draw = now;
    const double elapsed = std::chrono::duration<double>(now - s.start).count();
    const double finished = static_cast<double>(p.done + p.failed);
    const double rate = elapsed > 0 ? finished / elapsed : 0.0;
    const double left = rate > 0 ? (static_cast<double>(p.total) - finished) / rate : 0.0;
    try {
        const std::string line =
            fmt::format("\r{}  {}/{}  ({} failed)  {:.1f} k/s  ETA {:.1f} s\x1b[K{}", s.label, p.done + p.failed,
                        p.total, p.failed, rate / 1000.0, left, last ? "\n" : "");
        std::fputs(line.c_str(), stderr);
        std::fflush(stderr);
    } catch (...) {
        // out of memory: no line this time
    }
}

}  // namespace coproc
