// coproc/worker_output.hpp — where a worker's stdout and stderr go:
// inherited from the host (the default), discarded, into a file, or to a
// callback line by line. Set in WorkerOptions::std_out / std_err.
//
//   coproc::WorkerOptions options;
//   options.std_out = coproc::OutputSink::lines([](std::string_view line) {
//       fmt::print("[worker] {}\n", line);
//   });
//   options.std_err = coproc::OutputSink::file("worker.log", /*append=*/true);
//   coproc::WorkerResource<M> w(options, target);
//
// A file is opened (created 0644, truncated unless `append`) by the host
// when the worker starts, so a bad path is a SpawnError from the
// constructor; the worker writes to it in append mode, so the workers of a
// pool (which all share one opening) never overwrite each other's lines.
//
// A lines sink reads a pipe on the host thread, inside that worker's own
// blocking calls: its messenger's receives, sends and waits, join(),
// terminate() and the destructor, and pump_output(). There is no reader
// thread (a host thread would make every later fork unsafe). So:
//   - lines arrive while the host is in one of those calls: a host busy
//     elsewhere sees them later. A worker that writes more than the pipe
//     holds (up to 1 MiB) while its host calls none of them waits for it,
//     as with any pipe; an event loop watches output_fd() and calls
//     pump_output().
//   - the callback gets each line without its '\n' (a last line without one
//     is delivered when the worker has exited). It runs on the host thread,
//     must not call into that WorkerResource or its messenger, and must
//     not throw (an escaping exception ends the program: std::terminate).
//   - a forked worker's C stdout is made line-buffered when it goes to a
//     lines sink; a spawned program's stdio is its own (flush, or use
//     std::endl, or setvbuf).
// Pools take inherit, discard and file sinks; a lines sink there is
// std::invalid_argument (a pool's workers come and go: use a file).
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace coproc {

class OutputSink {
public:
    enum class Kind { inherit, discard, file, lines };
    using LineCallback = std::function<void(std::string_view line)>;

    /// The host's own stdout or stderr (the default).
    OutputSink() = default;
    [[nodiscard]] static OutputSink inherit() { return {}; }
    /// /dev/null.
    [[nodiscard]] static OutputSink discard() { return OutputSink(Kind::discard, {}, false, {}); }
    /// `path`, created if missing (mode 0644), truncated unless `append`.
    [[nodiscard]] static OutputSink file(std::string path, bool append = false) {
        return OutputSink(Kind::file, std::move(path), append, {});
    }
    /// `on_line(line)` for every line, on the host thread (see above).
    [[nodiscard]] static OutputSink lines(LineCallback on_line) {
        return OutputSink(Kind::lines, {}, false, std::move(on_line));
    }

    [[nodiscard]] Kind kind() const noexcept { return kind_; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] bool append() const noexcept { return append_; }
    [[nodiscard]] const LineCallback& on_line() const noexcept { return on_line_; }

private:
    OutputSink(Kind kind, std::string path, bool append, LineCallback on_line)
        : kind_(kind), path_(std::move(path)), append_(append), on_line_(std::move(on_line)) {}

    Kind kind_ = Kind::inherit;
    std::string path_;
    bool append_ = false;
    LineCallback on_line_;
};

}  // namespace coproc
