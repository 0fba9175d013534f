// coproc/detail/output_capture.hpp — the host's side of a worker's stdout
// and stderr sinks (coproc/worker_output.hpp): the files and pipes opened
// before the worker starts, and the reading of lines sinks. Compiled in
// lib/output_capture.cpp. Internal.
#pragma once

#include <array>
#include <cstddef>
#include <string>

#include "coproc/detail/fork_registry.hpp"
#include "coproc/detail/unique_fd.hpp"
#include "coproc/worker_output.hpp"

namespace coproc::detail {

/// One worker's two sinks. Not thread-safe; the host thread owns it.
class OutputCapture {
public:
    /// Opens what the sinks need: a file (created 0644, truncated unless
    /// append, written in append mode), /dev/null, or a pipe for a lines
    /// sink. Throws SpawnError naming a file that cannot be opened,
    /// std::invalid_argument for a lines sink without a callback or a file
    /// sink without a path. All fds are close-on-exec.
    OutputCapture(const OutputSink& out, const OutputSink& err);
    OutputCapture(const OutputCapture&) = delete;
    OutputCapture& operator=(const OutputCapture&) = delete;
    ~OutputCapture();

    /// True if both sinks inherit: nothing to do anywhere.
    [[nodiscard]] bool inherits_all() const noexcept { return !streams_[0].child && !streams_[1].child; }
    /// The fds the worker gets as 1 and 2; -1: keep the host's.
    [[nodiscard]] int child_fd(std::size_t stream) const noexcept { return streams_[stream].child.get(); }
    /// Whether the worker's stdout goes to a lines sink (a forked worker
    /// line-buffers its C stdout then).
    [[nodiscard]] bool stdout_is_lines() const noexcept { return static_cast<bool>(streams_[0].read); }

    /// After the worker started: drops the host's copies of its ends (a
    /// pipe whose write end the host keeps never reaches end of file).
    void child_started() noexcept;

    /// Readable when a lines sink has something to read; -1 without one.
    [[nodiscard]] int fd() const noexcept { return poll_.get(); }
    /// Reads what the pipes hold now, without blocking, and calls the
    /// callbacks for every complete line. Returns the number of lines.
    /// A callback's exception ends the program (std::terminate).
    std::size_t pump() noexcept;
    /// After the worker has exited: pump(), then the last line of each
    /// stream even without its '\n'; the pipes are closed. Idempotent.
    std::size_t finish() noexcept;

private:
    struct Stream {
        UniqueFd child;                    // the worker's end (file, /dev/null, pipe write end)
        UniqueFd read;                     // a lines sink's read end
        FdRegistration read_registration;  // workers forked later close it
        OutputSink::LineCallback on_line;
        std::string partial;  // bytes after the last '\n'
    };
    std::size_t read_stream(Stream& s) noexcept;
    static std::size_t deliver_lines(Stream& s) noexcept;

    std::array<Stream, 2> streams_{};
    UniqueFd poll_;  // epoll over the read ends: one fd for the link's waits
    FdRegistration poll_registration_;
    void close_stream(Stream& s) noexcept;
};

/// In a forked worker, before its target: makes `out` and `err` (-1: keep)
/// its fds 1 and 2, line-buffering C stdout if asked. On failure: a line on
/// stderr and _exit(125). Never returns an error.
void redirect_output_or_exit(int out, int err, bool line_buffer_stdout) noexcept;

/// Makes C stdout line-buffered (flushing what it holds first): for a worker
/// whose stdout a lines sink reads through a pipe. In the worker only.
void line_buffer_stdout() noexcept;

}  // namespace coproc::detail
