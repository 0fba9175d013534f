// lib/socket.hpp — socket I/O for the link: sends that never raise SIGPIPE
// (MSG_NOSIGNAL), receives that collect passed descriptors, and waits with
// deadlines that survive signals. Private to the library (and its tests).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <span>

#include <sys/socket.h>
#include <sys/uio.h>

#include "coproc/detail/deadline.hpp"
#include "coproc/detail/unique_fd.hpp"

namespace coproc::detail {

/// AF_UNIX pair of `type` (SOCK_STREAM, SOCK_SEQPACKET), both ends CLOEXEC
/// from creation. Throws SystemError.
[[nodiscard]] FdPair make_socketpair(int type = SOCK_STREAM);

/// Readiness bits returned by wait_readable.
enum : unsigned { ready_none = 0, ready_fd = 1, ready_extra = 2, ready_service = 4 };

/// Waits until `fd` is readable (or hung up), or `extra_fd` or `service_fd`
/// (either may be -1) is readable, or the deadline passes. Survives signals:
/// the remaining time is recomputed from the deadline. Returns a mask of
/// ready_fd / ready_extra / ready_service; ready_none means the deadline passed.
[[nodiscard]] unsigned wait_readable(int fd, int extra_fd, Deadline deadline, int service_fd = -1);

/// Readiness bits returned by wait_io.
enum : unsigned { io_none = 0, io_writable = 1, io_readable = 2, io_service = 4 };

/// Waits until `fd` is writable (or in error), or, if `also_readable`, has
/// something to read, or `service_fd` (may be -1) is readable. Returns a mask
/// of io_writable / io_readable / io_service; io_none means the deadline
/// passed. Survives signals like wait_readable.
[[nodiscard]] unsigned wait_io(int fd, bool also_readable, Deadline deadline, int service_fd = -1);

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
