// coproc/progress_line.hpp — a ready progress callback for Pool::map and
// map_unordered: one line on stderr, redrawn in place, with the rate and
// the time left; silent when stderr is not a terminal (a log, a pipe, CI).
//
//   auto squares = pool.map(inputs, {.progress = coproc::ProgressLine("squares")});
//   // squares  7500/10000  (0 failed)  41.2 k/s  ETA 0.1 s
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <memory>
#include <string>

#include "coproc/pool_options.hpp"

namespace coproc {

class ProgressLine {
public:
    /// `label` starts the line. Whether stderr is a terminal is read here.
    explicit ProgressLine(std::string label = "progress");
    /// Draws the line for `p` (at most about ten times a second, and always
    /// the last time, which ends the line). Never throws; not thread-safe
    /// (a pool calls it from the thread that drives it). Copies share one
    /// line.
    void operator()(const PoolProgress& p) const noexcept;

    struct State;

private:
    std::shared_ptr<State> state_;
};

}  // namespace coproc
