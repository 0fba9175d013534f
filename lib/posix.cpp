// The posix layer: fd ownership, EINTR-safe waits with deadlines, and socket
// I/O that never raises SIGPIPE (MSG_NOSIGNAL on every send).
#include "coproc/detail/fd.hpp"
#include "coproc/detail/syscalls.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <system_error>

#include "coproc/error.hpp"

namespace coproc::detail {

namespace {
long real_recv(int fd, void* buffer, std::size_t size, int flags) { return ::recv(fd, buffer, size, flags); }
long real_send(int fd, const void* data, std::size_t size, int flags) { return ::send(fd, data, size, flags); }
int real_poll(pollfd* fds, unsigned long count, int timeout_ms) { return ::poll(fds, count, timeout_ms); }
Syscalls g_syscalls{&real_recv, &real_send, &real_poll};
}  // namespace

Syscalls& syscalls() noexcept { return g_syscalls; }
Syscalls real_syscalls() noexcept { return {&real_recv, &real_send, &real_poll}; }
void reset_syscalls() noexcept { g_syscalls = real_syscalls(); }

void throw_system_error(int err, const char* operation) {
    throw SystemError(std::error_code(err, std::generic_category()), operation);
}

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) {
        // Never retried: Linux releases the descriptor even when close() fails.
        (void)::close(fd_);
    }
    fd_ = fd;
}

void UniqueFd::close() {
    const int fd = std::exchange(fd_, -1);
    if (fd >= 0 && ::close(fd) == -1 && errno != EINTR) throw_system_error(errno, "close");
}

SocketPair make_socketpair() {
    int fds[2];
    // SOCK_CLOEXEC at creation: a fork+exec in another thread cannot inherit them.
    check_unix(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

int poll_timeout(Deadline deadline) noexcept {
    if (!deadline) return -1;
    const auto left = *deadline - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

namespace {

// poll() that survives EINTR by recomputing the time left (never restarts the
// full timeout). Returns the number of ready fds, 0 on deadline.
int poll_until(pollfd* fds, nfds_t count, Deadline deadline) {
    for (;;) {
        const int rc = g_syscalls.poll(fds, count, poll_timeout(deadline));
        if (rc >= 0) {
            // poll rounds to milliseconds; do not report a timeout before the deadline.
            if (rc == 0 && deadline && Clock::now() < *deadline) continue;
            return rc;
        }
        if (errno != EINTR) throw_system_error(errno, "poll");
    }
}

}  // namespace

unsigned wait_readable(int fd, int extra_fd, Deadline deadline) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {extra_fd, POLLIN, 0}};
    const nfds_t count = extra_fd >= 0 ? 2 : 1;
    if (poll_until(fds, count, deadline) == 0) return ready_none;
    unsigned mask = ready_none;
    if (fds[0].revents != 0) mask |= ready_fd;
    if (count == 2 && fds[1].revents != 0) mask |= ready_extra;
    return mask;
}

unsigned wait_io(int fd, bool also_readable, Deadline deadline) {
    pollfd pfd{fd, static_cast<short>(POLLOUT | (also_readable ? POLLIN : 0)), 0};
    if (poll_until(&pfd, 1, deadline) == 0) return io_none;
    unsigned mask = io_none;
    if ((pfd.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) mask |= io_writable;
    if ((pfd.revents & POLLIN) != 0) mask |= io_readable;
    return mask;
}

namespace {
long recv_with(int fd, void* buffer, std::size_t size, int flags) {
    for (int resets = 0;; ++resets) {
        const long n = retry_eintr(g_syscalls.recv, fd, buffer, size, flags);
        if (n >= 0) return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        // A peer that exits with unread data in its own receive queue makes
        // the kernel report ECONNRESET to us once (the error is cleared as it
        // is reported). Linux returns queued data before that error; read once
        // more anyway so no kernel ordering can strand a frame, then call it EOF.
        if (errno == ECONNRESET && resets == 0) continue;
        if (errno == ECONNRESET || errno == EPIPE) return 0;
        throw_system_error(errno, "recv");
    }
}
}  // namespace

long recv_some(int fd, void* buffer, std::size_t size) { return recv_with(fd, buffer, size, MSG_DONTWAIT); }
long recv_blocking(int fd, void* buffer, std::size_t size) { return recv_with(fd, buffer, size, 0); }

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
    check_unix(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), "setsockopt(SO_RCVTIMEO)");
}

SendResult send_some(int fd, const void* data, std::size_t size, std::size_t& sent) {
    const int flags = MSG_NOSIGNAL | MSG_DONTWAIT;
    const long n = retry_eintr(g_syscalls.send, fd, data, size, flags);
    if (n >= 0) {
        sent = static_cast<std::size_t>(n);
        return SendResult::ok;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SendResult::would_block;
    if (errno == EPIPE || errno == ECONNRESET) return SendResult::peer_closed;
    throw_system_error(errno, "send");
}

}  // namespace coproc::detail
