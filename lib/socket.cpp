// Socket I/O that never raises SIGPIPE (MSG_NOSIGNAL on every send), and
// EINTR-safe waits with deadlines. Every call goes through the syscall seam.
#include "socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "coproc/error.hpp"
#include "syscall_seam.hpp"

namespace coproc::detail {

FdPair make_socketpair(int type) {
    int fds[2];
    // SOCK_CLOEXEC at creation: a fork+exec in another thread cannot inherit them.
    check_unix(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), "socketpair");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

namespace {

// poll() that survives EINTR by recomputing the time left (never restarts the
// full timeout). Returns the number of ready fds, 0 on deadline.
int poll_until(pollfd* fds, nfds_t count, Deadline deadline) {
    for (;;) {
        const int rc = syscalls().poll(fds, count, poll_timeout(deadline));
        if (rc >= 0) {
            // poll rounds to milliseconds; do not report a timeout before the deadline.
            if (rc == 0 && deadline && Clock::now() < *deadline) continue;
            return rc;
        }
        if (errno != EINTR) throw_system_error(errno, "poll");
    }
}

}  // namespace

unsigned wait_readable(int fd, int extra_fd, Deadline deadline, int service_fd) {
    // poll() ignores entries with a negative fd: the set keeps its shape.
    pollfd fds[3] = {{fd, POLLIN, 0}, {extra_fd, POLLIN, 0}, {service_fd, POLLIN, 0}};
    const nfds_t count = service_fd >= 0 ? 3 : extra_fd >= 0 ? 2 : 1;
    if (poll_until(fds, count, deadline) == 0) return ready_none;
    unsigned mask = ready_none;
    if (fds[0].revents != 0) mask |= ready_fd;
    if (count >= 2 && fds[1].revents != 0) mask |= ready_extra;
    if (count == 3 && fds[2].revents != 0) mask |= ready_service;
    return mask;
}

unsigned wait_io(int fd, bool also_readable, Deadline deadline, int service_fd) {
    pollfd fds[2] = {{fd, static_cast<short>(POLLOUT | (also_readable ? POLLIN : 0)), 0}, {service_fd, POLLIN, 0}};
    if (poll_until(fds, service_fd >= 0 ? 2 : 1, deadline) == 0) return io_none;
    unsigned mask = io_none;
    if ((fds[0].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) mask |= io_writable;
    if ((fds[0].revents & POLLIN) != 0) mask |= io_readable;
    if (service_fd >= 0 && fds[1].revents != 0) mask |= io_service;
    return mask;
}

namespace {

// Moves the descriptors of an SCM_RIGHTS message into `inbox` (or closes them).
void collect_fds(msghdr& message, FdInbox* inbox) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int received = -1;
            std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            UniqueFd owned(received);
            if (inbox != nullptr) inbox->push_back(std::move(owned));
        }
    }
    // The kernel dropped descriptors it could not fit: the frames that name
    // them can never be resolved, so the stream is broken.
    if ((message.msg_flags & MSG_CTRUNC) != 0)
        throw ProtocolError("coproc: received too many file descriptors at once");
}

long recv_with(int fd, void* buffer, std::size_t size, int flags, FdInbox* inbox) {
    for (int resets = 0;; ++resets) {
        long n = 0;
        if (inbox == nullptr) {
            // No descriptors wanted: plain recv, cheaper than recvmsg. Any
            // the peer attached anyway are closed by the kernel.
            n = retry_eintr(syscalls().recv, fd, buffer, size, flags);
        } else {
            iovec iov{buffer, size};
            // Room for a few descriptors; a sender attaches at most one per send.
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
            msghdr message{};
            message.msg_iov = &iov;
            message.msg_iovlen = 1;
            message.msg_control = control;
            message.msg_controllen = sizeof control;
            n = retry_eintr(syscalls().recvmsg, fd, &message, flags | MSG_CMSG_CLOEXEC);
            if (n >= 0 && message.msg_controllen != 0) collect_fds(message, inbox);
        }
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

long recv_some(int fd, void* buffer, std::size_t size, FdInbox* inbox) {
    return recv_with(fd, buffer, size, MSG_DONTWAIT, inbox);
}
long recv_blocking(int fd, void* buffer, std::size_t size, FdInbox* inbox) {
    return recv_with(fd, buffer, size, 0, inbox);
}

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
    check_unix(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), "setsockopt(SO_RCVTIMEO)");
}

namespace {
// One sendmsg of `segments`, with `attach_fd` (if >= 0) as SCM_RIGHTS.
long send_message(int fd, std::span<const iovec> segments, int attach_fd, int flags) {
    msghdr message{};
    message.msg_iov = const_cast<iovec*>(segments.data());  // sendmsg does not write through it
    message.msg_iovlen = segments.size();
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (attach_fd >= 0) {
        std::memset(control, 0, sizeof control);
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&message);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &attach_fd, sizeof(int));
    }
    return retry_eintr(syscalls().sendmsg, fd, static_cast<const msghdr*>(&message), flags);
}
}  // namespace

SendResult send_some(int fd, std::span<const iovec> segments, std::size_t& sent, int attach_fd) {
    // Linux accepts up to IOV_MAX (1024) segments; a longer list is simply
    // sent in several calls (the caller loops over partial sends anyway).
    constexpr std::size_t max_segments = 64;
    constexpr int flags = MSG_NOSIGNAL | MSG_DONTWAIT;
    long n = 0;
    if (segments.size() == 1 && attach_fd < 0) {
        // The common case, one buffer and no descriptor: send() costs
        // measurably less than sendmsg() (no msghdr/iovec to copy in).
        n = retry_eintr(syscalls().send, fd, static_cast<const void*>(segments[0].iov_base), segments[0].iov_len,
                        flags);
    } else {
        n = send_message(fd, segments.first(std::min(segments.size(), max_segments)), attach_fd, flags);
    }
    if (n >= 0) {
        sent = static_cast<std::size_t>(n);
        return SendResult::ok;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SendResult::would_block;
    if (errno == EPIPE || errno == ECONNRESET) return SendResult::peer_closed;
    throw_system_error(errno, "send");
}

SendResult send_some(int fd, const void* data, std::size_t size, std::size_t& sent) {
    const iovec one{const_cast<void*>(data), size};
    return send_some(fd, std::span<const iovec>(&one, 1), sent, -1);
}

}  // namespace coproc::detail
