// coproc/detail/fd.hpp — the posix layer: a move-only fd owner, EINTR retry in
// one place, socket send/receive that never raise SIGPIPE, and waits with
// deadlines. Internal: users never need this header.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

namespace coproc::detail {

using Clock = std::chrono::steady_clock;
/// An absolute deadline; nullopt means "wait forever".
using Deadline = std::optional<Clock::time_point>;

/// Deadline `timeout` from now (saturating; negative means "already passed").
[[nodiscard]] inline Deadline deadline_after(Clock::duration timeout) noexcept {
    const auto now = Clock::now();
    if (timeout > Clock::time_point::max() - now) return std::nullopt;
    return now + timeout;
}

/// The earlier of `deadline` and `most` from now: a wait that must wake up
/// at least that often to look at something else.
[[nodiscard]] inline Deadline at_most(Deadline deadline, Clock::duration most) noexcept {
    const auto soon = Clock::now() + most;
    return deadline && *deadline < soon ? deadline : Deadline(soon);
}

/// Calls f(args...) again while it fails with EINTR. The one place coproc
/// retries interrupted system calls. Never use it for close(): on Linux the fd
/// is released even when close reports EINTR.
template <class F, class... Args>
auto retry_eintr(F f, Args... args) {
    for (;;) {
        auto result = f(args...);
        if (!(result == -1 && errno == EINTR)) return result;
    }
}

/// Milliseconds left until `deadline` for poll()-style calls, rounded up so a
/// wait never ends early; -1 for no deadline, 0 once it has passed.
[[nodiscard]] int poll_timeout(Deadline deadline) noexcept;

/// Throws SystemError for `err`, naming the operation.
[[noreturn]] void throw_system_error(int err, const char* operation);

/// Returns `result`; if it is -1, throws SystemError from errno.
inline long check_unix(long result, const char* operation) {
    if (result == -1) throw_system_error(errno, operation);
    return result;
}

/// Move-only owner of a file descriptor. The destructor closes it and never
/// throws; close() reports a failed close as SystemError. Not thread-safe.
class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
    /// Gives up ownership without closing.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the current fd (errors ignored) and owns `fd`.
    void reset(int fd = -1) noexcept;
    /// Closes now; throws SystemError if close() fails (the fd is released anyway).
    void close();

private:
    int fd_ = -1;
};

/// Registers a library-owned fd that every forked child closes (another
/// worker's socket end or pidfd, a shared-memory slot). RAII, move-only. Thread-safe.
class FdRegistration {
public:
    FdRegistration() noexcept = default;
    explicit FdRegistration(int fd);
    FdRegistration(FdRegistration&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    FdRegistration& operator=(FdRegistration&& other) noexcept;
    FdRegistration(const FdRegistration&) = delete;
    FdRegistration& operator=(const FdRegistration&) = delete;
    ~FdRegistration() { reset(); }
    void reset() noexcept;

private:
    int fd_ = -1;
};

/// The registered fds of this process (a forked child closes them).
[[nodiscard]] std::vector<int> registered_fds();

/// An address range mapped with MADV_DONTFORK: a forked child has no such
/// mapping, but tools that model the address space (valgrind) think it does
/// until told, and then scan it fault by fault at exit (~2 s per MiB).
struct DontforkRange {
    void* addr = nullptr;
    std::size_t size = 0;
};
/// Maps `size` bytes of `fd` shared and faulted in now, marks the range
/// MADV_DONTFORK and records it; nullptr (errno set) on failure. Thread-safe.
[[nodiscard]] char* map_shared_dontfork(int fd, std::size_t size) noexcept;
/// Unmaps and forgets a range from map_shared_dontfork. Thread-safe.
void unmap_shared_dontfork(void* addr, std::size_t size) noexcept;
/// The recorded ranges of this process. A forked child munmaps them first
/// thing: a no-op for the kernel, which never copied them.
[[nodiscard]] std::vector<DontforkRange> dontfork_ranges();

/// What a forked child must close and unmap, taken with both registries
/// locked; they stay locked until release() (the parent, right after fork)
/// or reset_in_child(). So another thread cannot deregister an fd and reuse
/// its number, or unmap a range and map something else there, between the
/// snapshot and the fork: the child would close or unmap what is not ours.
/// The other threads' registrations wait for the fork meanwhile.
class RegistrySnapshot {
public:
    RegistrySnapshot();  // throws std::bad_alloc (then nothing stays locked)
    ~RegistrySnapshot() { release(); }
    RegistrySnapshot(const RegistrySnapshot&) = delete;
    RegistrySnapshot& operator=(const RegistrySnapshot&) = delete;
    /// Unlocks (in the parent). Idempotent.
    void release() noexcept;
    /// In the child, whose one thread took the snapshot: the registries'
    /// locks (copied held) are made anew, and the registries hold the
    /// child's own channel (side_fd: -1 for none), as its workers must
    /// close it. No allocation, no libc call. Idempotent.
    void reset_in_child(int channel_fd, int side_fd) noexcept;

    pid_t pid;  // the process that took the snapshot (the parent, after fork)
    std::vector<int> fds;
    std::vector<DontforkRange> ranges;

private:
    bool held_ = false;
};

struct SocketPair {
    UniqueFd first;
    UniqueFd second;
};

/// AF_UNIX pair of `type` (SOCK_STREAM, SOCK_SEQPACKET), both ends CLOEXEC
/// from creation. Throws SystemError.
[[nodiscard]] SocketPair make_socketpair(int type = SOCK_STREAM);

/// One end of a messenger link: its stream socket and its descriptor side
/// channel (SOCK_SEQPACKET; carries the memfds of shared-memory slots).
struct LinkEnd {
    UniqueFd stream;
    UniqueFd side;
};
struct LinkPair {
    LinkEnd first;
    LinkEnd second;
};
/// Both ends of a new link. Throws SystemError.
[[nodiscard]] LinkPair make_link_pair();

/// Readiness bits returned by wait_readable.
enum : unsigned { ready_none = 0, ready_fd = 1, ready_extra = 2 };

/// Waits until `fd` is readable (or hung up), or `extra_fd` (may be -1) is
/// readable, or the deadline passes. Survives signals: the remaining time is
/// recomputed from the deadline. Returns a mask of ready_fd / ready_extra;
/// ready_none means the deadline passed.
[[nodiscard]] unsigned wait_readable(int fd, int extra_fd, Deadline deadline);

/// Readiness bits returned by wait_io.
enum : unsigned { io_none = 0, io_writable = 1, io_readable = 2 };

/// Waits until `fd` is writable (or in error), or, if `also_readable`, has
/// something to read. Returns a mask of io_writable / io_readable; io_none
/// means the deadline passed. Survives signals like wait_readable.
[[nodiscard]] unsigned wait_io(int fd, bool also_readable, Deadline deadline);

/// Descriptors received with SCM_RIGHTS, oldest first (CLOEXEC).
using FdInbox = std::deque<UniqueFd>;

/// One non-blocking recv. Returns bytes read (> 0), 0 at end of stream (EOF or
/// connection reset), or -1 when nothing is readable now. Descriptors that
/// arrive with the bytes go to `inbox`; with a null inbox it is a plain
/// recv() and the kernel closes any descriptors that came. Throws
/// SystemError; ProtocolError if the kernel had to drop descriptors.
[[nodiscard]] long recv_some(int fd, void* buffer, std::size_t size, FdInbox* inbox = nullptr);

/// One blocking recv: like recv_some, but waits for data; -1 when the
/// socket's receive timeout (SO_RCVTIMEO) ended the wait.
[[nodiscard]] long recv_blocking(int fd, void* buffer, std::size_t size, FdInbox* inbox = nullptr);

/// Sets SO_RCVTIMEO: blocking receives return at least this often.
void set_receive_timeout(int fd, std::chrono::milliseconds timeout);

/// Outcome of send_some.
enum class SendResult { ok, would_block, peer_closed };

/// One non-blocking send with MSG_NOSIGNAL (never SIGPIPE). `sent` receives
/// the byte count on ok. Throws SystemError.
[[nodiscard]] SendResult send_some(int fd, const void* data, std::size_t size, std::size_t& sent);

/// One non-blocking sendmsg of the segments in order (gathered; a long list
/// may be sent only in part). `attach_fd` >= 0 travels with the first byte
/// sent (SCM_RIGHTS); it is attached only if some byte was sent (ok with
/// sent > 0).
[[nodiscard]] SendResult send_some(int fd, std::span<const ::iovec> segments, std::size_t& sent, int attach_fd);

}  // namespace coproc::detail
