// lib/syscall_seam.hpp — the seam between coproc and the kernel for the
// calls on its hot paths, so tests can inject EINTR, EAGAIN, short reads and
// writes, and EPIPE. Private to the library (and its tests); compiled in
// lib/syscall_seam.cpp.
//
// Replace entries only while no coproc call runs in any thread; restore them
// with reset_syscalls(). The replacements must be thread-safe and set errno
// as the real calls do.
#pragma once

#include <cstddef>

struct pollfd;
struct msghdr;

namespace coproc::detail {

struct Syscalls {
    long (*recv)(int fd, void* data, std::size_t size, int flags);
    long (*recvmsg)(int fd, ::msghdr* message, int flags);
    long (*send)(int fd, const void* data, std::size_t size, int flags);
    long (*sendmsg)(int fd, const ::msghdr* message, int flags);
    int (*poll)(::pollfd* fds, unsigned long count, int timeout_ms);
};

/// The table coproc's socket layer (lib/socket.cpp) calls through.
[[nodiscard]] Syscalls& syscalls() noexcept;
/// The real system calls.
[[nodiscard]] Syscalls real_syscalls() noexcept;
/// Restores the real system calls.
void reset_syscalls() noexcept;

}  // namespace coproc::detail
