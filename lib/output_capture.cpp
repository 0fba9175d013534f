// A worker's stdout and stderr sinks, host side (see output_capture.hpp).
#include "coproc/detail/output_capture.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "coproc/error.hpp"

namespace coproc::detail {

namespace {

constexpr const char* stream_names[2] = {"std_out", "std_err"};
// A pipe this large lets a chatty worker run on while its host is busy
// elsewhere. Best effort: the kernel caps unprivileged pipes
// (/proc/sys/fs/pipe-max-size, and a per-user total).
constexpr int pipe_size = 1 << 20;
// One pump reads at most this much per stream, so a worker writing without
// pause cannot keep the host in its callbacks forever. Above any pipe's
// size: whatever was in the pipe when the pump began is read.
constexpr std::size_t pump_budget = std::size_t{4} << 20;

UniqueFd open_sink_file(const OutputSink& sink, std::size_t stream) {
    if (sink.path().empty())
        throw std::invalid_argument(
            fmt::format("coproc: WorkerOptions::{}: a file sink needs a path", stream_names[stream]));
    const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (sink.append() ? 0 : O_TRUNC);
    const int fd = retry_eintr(::open, sink.path().c_str(), flags, 0644);
    if (fd < 0)
        throw SpawnError(fmt::format("coproc: WorkerOptions::{}: cannot open '{}': {}", stream_names[stream],
                                     sink.path(), std::strerror(errno)));
    return UniqueFd(fd);
}

}  // namespace

OutputCapture::OutputCapture(const OutputSink& out, const OutputSink& err) {
    const OutputSink* sinks[2] = {&out, &err};
    for (std::size_t i = 0; i < 2; ++i) {
        const OutputSink& sink = *sinks[i];
        Stream& s = streams_[i];
        switch (sink.kind()) {
            case OutputSink::Kind::inherit: break;
            case OutputSink::Kind::discard:
                s.child =
                    UniqueFd(static_cast<int>(check_unix(::open("/dev/null", O_WRONLY | O_CLOEXEC), "open /dev/null")));
                break;
            case OutputSink::Kind::file: s.child = open_sink_file(sink, i); break;
            case OutputSink::Kind::lines: {
                if (!sink.on_line())
                    throw std::invalid_argument(
                        fmt::format("coproc: WorkerOptions::{}: a lines sink needs a callback", stream_names[i]));
                int fds[2];
                check_unix(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), "pipe2");
                s.read = UniqueFd(fds[0]);
                s.child = UniqueFd(fds[1]);
                s.read_registration = FdRegistration(fds[0]);
                // The worker's end blocks like an ordinary stdout.
                (void)::fcntl(fds[1], F_SETFL, 0);
                (void)::fcntl(fds[1], F_SETPIPE_SZ, pipe_size);
                s.on_line = sink.on_line();
                if (!poll_) {
                    poll_ = UniqueFd(static_cast<int>(check_unix(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")));
                    poll_registration_ = FdRegistration(poll_.get());
                }
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.u32 = static_cast<std::uint32_t>(i);
                check_unix(::epoll_ctl(poll_.get(), EPOLL_CTL_ADD, fds[0], &ev), "epoll_ctl");
                break;
            }
        }
    }
}

OutputCapture::~OutputCapture() = default;

void OutputCapture::child_started() noexcept {
    for (Stream& s : streams_) s.child.reset();
}

std::size_t OutputCapture::deliver_lines(Stream& s) noexcept {
    std::size_t count = 0;
    std::size_t from = 0;
    for (;;) {
        const std::size_t nl = s.partial.find('\n', from);
        if (nl == std::string::npos) break;
        // noexcept: a throwing callback ends the program, as documented.
        s.on_line(std::string_view(s.partial).substr(from, nl - from));
        ++count;
        from = nl + 1;
    }
    s.partial.erase(0, from);
    return count;
}

std::size_t OutputCapture::read_stream(Stream& s) noexcept {
    if (!s.read) return 0;
    std::size_t lines = 0;
    std::size_t taken = 0;
    char buffer[16384];
    while (taken < pump_budget) {
        const ssize_t n = ::read(s.read.get(), buffer, sizeof buffer);
        if (n > 0) {
            taken += static_cast<std::size_t>(n);
            s.partial.append(buffer, static_cast<std::size_t>(n));
            lines += deliver_lines(s);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        // End of file (every writer gone) or an error: no more from it.
        close_stream(s);
        break;
    }
    return lines;
}

std::size_t OutputCapture::pump() noexcept {
    std::size_t lines = 0;
    for (Stream& s : streams_) lines += read_stream(s);
    return lines;
}

std::size_t OutputCapture::finish() noexcept {
    std::size_t lines = pump();
    for (Stream& s : streams_) {
        if (!s.on_line) continue;
        if (!s.partial.empty()) {
            s.on_line(s.partial);
            ++lines;
            s.partial.clear();
        }
        // What a process the worker left behind writes later is not read.
        close_stream(s);
        s.on_line = nullptr;
    }
    poll_registration_.reset();
    poll_.reset();
    return lines;
}

void OutputCapture::close_stream(Stream& s) noexcept {
    if (!s.read) return;
    // The epoll set forgets the fd as its last copy is closed.
    s.read_registration.reset();
    s.read.reset();
}

void redirect_output_or_exit(int out, int err, bool line_buffer_stdout) noexcept {
    const int fds[2] = {out, err};
    for (int i = 0; i < 2; ++i) {
        if (fds[i] < 0) continue;
        if (::dup2(fds[i], i + 1) < 0) {
            char line[128];
            const int n = std::snprintf(line, sizeof line, "coproc: worker cannot redirect fd %d: %s\n", i + 1,
                                        std::strerror(errno));
            if (n > 0) (void)!::write(2, line, static_cast<std::size_t>(n));
            ::_exit(125);
        }
        // The originals are the host's copies; this process keeps only 1 and 2.
        if (fds[i] > 2) ::close(fds[i]);
    }
    if (line_buffer_stdout) detail::line_buffer_stdout();
}

void line_buffer_stdout() noexcept {
    // A buffer of our own: glibc sets a stream's pointers afresh only then
    // (with a null buffer a stream already used stays fully buffered).
    static char buffer[BUFSIZ];
    (void)std::fflush(stdout);
    (void)std::setvbuf(stdout, buffer, _IOLBF, sizeof buffer);
}

}  // namespace coproc::detail
