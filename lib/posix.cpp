// The posix layer: fd ownership, EINTR-safe waits with deadlines, and socket
// I/O that never raises SIGPIPE (MSG_NOSIGNAL on every send).
#include "coproc/detail/fd.hpp"
#include "coproc/detail/syscalls.hpp"
#include "raw_syscall.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <new>
#include <span>
#include <vector>
#include <system_error>

#include "coproc/error.hpp"

namespace coproc::detail {

namespace {
// Inline system calls (raw_syscall.hpp): a fresh worker's first messages
// then fault in no libc page. As libc's: -1 and errno on failure.
long real_recv(int fd, void* data, std::size_t size, int flags) {
    return sys::with_errno(sys::recv(fd, data, size, flags));
}
long real_recvmsg(int fd, msghdr* message, int flags) { return sys::with_errno(sys::recvmsg(fd, message, flags)); }
long real_send(int fd, const void* data, std::size_t size, int flags) {
    return sys::with_errno(sys::send(fd, data, size, flags));
}
long real_sendmsg(int fd, const msghdr* message, int flags) { return sys::with_errno(sys::sendmsg(fd, message, flags)); }
int real_poll(pollfd* fds, unsigned long count, int timeout_ms) {
    return static_cast<int>(sys::with_errno(sys::poll(fds, count, timeout_ms)));
}
Syscalls g_syscalls{&real_recv, &real_recvmsg, &real_send, &real_sendmsg, &real_poll};
}  // namespace

Syscalls& syscalls() noexcept { return g_syscalls; }
Syscalls real_syscalls() noexcept { return {&real_recv, &real_recvmsg, &real_send, &real_sendmsg, &real_poll}; }
void reset_syscalls() noexcept { g_syscalls = real_syscalls(); }

namespace {
// Entries that belong to one process: a forked child starts with an empty
// list (what it inherited names fds it closed and ranges it unmapped at
// start-up; fd numbers may be reused since). Thread-safe.
template <class T>
class ProcessList {
public:
    void add(T item) {
        const std::lock_guard lock(mutex_);
        forget_inherited(::getpid());
        items_.push_back(item);
    }
    // No pid check (getpid is a system call): in a process that inherited
    // the list, removing an entry it names is as right as keeping it.
    template <class Pred>
    void remove_first(Pred pred) noexcept {
        const std::lock_guard lock(mutex_);
        if (auto it = std::find_if(items_.begin(), items_.end(), pred); it != items_.end()) items_.erase(it);
    }
    std::vector<T> snapshot() {
        std::vector<T> items = lock_and_snapshot(::getpid());
        unlock();
        return items;
    }
    // For a fork: returns the entries and stays locked until unlock() (in
    // the parent) or reset_in_child(). Room for `spare` more entries is
    // reserved first, for the child.
    std::vector<T> lock_and_snapshot(pid_t self, std::size_t spare = 0) {
        mutex_.lock();
        try {
            forget_inherited(self);
            items_.reserve(items_.size() + spare);
            return items_;
        } catch (...) {
            mutex_.unlock();
            throw;
        }
    }
    void unlock() noexcept { mutex_.unlock(); }
    // In a forked child, whose one thread is the one that locked: the lock
    // is made anew instead of unlocked (no libc call: its unlock would be
    // one more code page to fault in) and the list holds `keep`, owned by
    // `self`. No allocation (the parent reserved the room).
    void reset_in_child(pid_t self, std::span<const T> keep) noexcept {
        new (&mutex_) std::mutex;
        items_.clear();
        for (const T& item : keep) {
            if (items_.size() < items_.capacity()) items_.push_back(item);
        }
        owner_ = self;
    }

private:
    void forget_inherited(pid_t self) {
        if (owner_ != self) {
            items_.clear();
            owner_ = self;
        }
    }
    std::mutex mutex_;
    std::vector<T> items_;
    pid_t owner_ = 0;
};

// Leaked: children and late destructors may still use them. One object in
// one page, so a forked child that unlocks and updates both writes one heap
// page (each is a copy-on-write fault there). A 1 KiB block of its own: in a
// start + join loop the host then wrote 9-10 pages per cycle, not 11-13 as
// with 256-byte alignment (measured; heap layout decides which share a page).
struct alignas(1024) Registries {
    ProcessList<int> fds;
    ProcessList<DontforkRange> ranges;
};
static_assert(sizeof(Registries) <= 1024, "one aligned block never straddles a page");
Registries& registries() {
    static auto* r = new Registries;
    return *r;
}
ProcessList<int>& fd_list() { return registries().fds; }
ProcessList<DontforkRange>& range_list() { return registries().ranges; }
}  // namespace

std::vector<int> registered_fds() { return fd_list().snapshot(); }

char* map_shared_dontfork(int fd, std::size_t size) noexcept {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) return nullptr;
    (void)::madvise(p, size, MADV_DONTFORK);
    try {
        range_list().add({p, size});
    } catch (...) {  // bad_alloc: unrecorded, which only slows valgrind down
    }
    return static_cast<char*>(p);
}

void unmap_shared_dontfork(void* addr, std::size_t size) noexcept {
    range_list().remove_first([addr](const DontforkRange& d) { return d.addr == addr; });
    (void)::munmap(addr, size);
}

std::vector<DontforkRange> dontfork_ranges() { return range_list().snapshot(); }

RegistrySnapshot::RegistrySnapshot() : pid(::getpid()) {
    fds = fd_list().lock_and_snapshot(pid, 2);  // room for the child's two
    try {
        ranges = range_list().lock_and_snapshot(pid);
    } catch (...) {
        fd_list().unlock();
        throw;
    }
    held_ = true;
}

void RegistrySnapshot::release() noexcept {
    if (!std::exchange(held_, false)) return;
    range_list().unlock();
    fd_list().unlock();
}

void RegistrySnapshot::reset_in_child(int channel_fd, int side_fd) noexcept {
    if (!std::exchange(held_, false)) return;
    const auto self = static_cast<pid_t>(sys::call(SYS_getpid));
    const int keep[] = {channel_fd, side_fd};
    fd_list().reset_in_child(self, std::span<const int>(keep, side_fd >= 0 ? 2 : 1));
    range_list().reset_in_child(self, {});
}

FdRegistration::FdRegistration(int fd) : fd_(fd) { fd_list().add(fd); }

FdRegistration& FdRegistration::operator=(FdRegistration&& other) noexcept {
    if (this != &other) {
        reset();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

void FdRegistration::reset() noexcept {
    if (fd_ < 0) return;
    const int fd = fd_;
    fd_list().remove_first([fd](int registered) { return registered == fd; });
    fd_ = -1;
}

void throw_system_error(int err, const char* operation) {
    throw SystemError(std::error_code(err, std::generic_category()), operation);
}

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) {
        // Never retried: Linux releases the descriptor even when close() fails.
        // Inline (raw_syscall.hpp): a worker closes its channel as it exits,
        // and libc's close() is one more page to fault in there.
        (void)sys::close(fd_);
    }
    fd_ = fd;
}

void UniqueFd::close() {
    const int fd = std::exchange(fd_, -1);
    if (fd < 0) return;
    if (const long rc = sys::close(fd); rc < 0 && rc != -EINTR) throw_system_error(static_cast<int>(-rc), "close");
}

SocketPair make_socketpair(int type) {
    int fds[2];
    // SOCK_CLOEXEC at creation: a fork+exec in another thread cannot inherit them.
    check_unix(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), "socketpair");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

LinkPair make_link_pair() {
    auto stream = make_socketpair(SOCK_STREAM);
    auto side = make_socketpair(SOCK_SEQPACKET);
    return {{std::move(stream.first), std::move(side.first)}, {std::move(stream.second), std::move(side.second)}};
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
    if ((message.msg_flags & MSG_CTRUNC) != 0) throw ProtocolError("coproc: received too many file descriptors at once");
}

long recv_with(int fd, void* buffer, std::size_t size, int flags, FdInbox* inbox) {
    for (int resets = 0;; ++resets) {
        long n = 0;
        if (inbox == nullptr) {
            // No descriptors wanted: plain recv, cheaper than recvmsg. Any
            // the peer attached anyway are closed by the kernel.
            n = retry_eintr(g_syscalls.recv, fd, buffer, size, flags);
        } else {
            iovec iov{buffer, size};
            // Room for a few descriptors; a sender attaches at most one per send.
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
            msghdr message{};
            message.msg_iov = &iov;
            message.msg_iovlen = 1;
            message.msg_control = control;
            message.msg_controllen = sizeof control;
            n = retry_eintr(g_syscalls.recvmsg, fd, &message, flags | MSG_CMSG_CLOEXEC);
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
long recv_blocking(int fd, void* buffer, std::size_t size, FdInbox* inbox) { return recv_with(fd, buffer, size, 0, inbox); }

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
    return retry_eintr(g_syscalls.sendmsg, fd, static_cast<const msghdr*>(&message), flags);
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
        n = retry_eintr(g_syscalls.send, fd, static_cast<const void*>(segments[0].iov_base), segments[0].iov_len, flags);
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
