// The syscall seam's table: the real calls, issued inline.
#include "syscall_seam.hpp"

#include <poll.h>
#include <sys/socket.h>

#include "inline_syscall.hpp"

namespace coproc::detail {

namespace {
// Inline system calls (inline_syscall.hpp): a fresh worker's first messages
// then fault in no libc page. As libc's: -1 and errno on failure.
long real_recv(int fd, void* data, std::size_t size, int flags) {
    return sys::with_errno(sys::recv(fd, data, size, flags));
}
long real_recvmsg(int fd, msghdr* message, int flags) { return sys::with_errno(sys::recvmsg(fd, message, flags)); }
long real_send(int fd, const void* data, std::size_t size, int flags) {
    return sys::with_errno(sys::send(fd, data, size, flags));
}
long real_sendmsg(int fd, const msghdr* message, int flags) {
    return sys::with_errno(sys::sendmsg(fd, message, flags));
}
int real_poll(pollfd* fds, unsigned long count, int timeout_ms) {
    return static_cast<int>(sys::with_errno(sys::poll(fds, count, timeout_ms)));
}
Syscalls g_syscalls{&real_recv, &real_recvmsg, &real_send, &real_sendmsg, &real_poll};
}  // namespace

Syscalls& syscalls() noexcept { return g_syscalls; }
Syscalls real_syscalls() noexcept { return {&real_recv, &real_recvmsg, &real_send, &real_sendmsg, &real_poll}; }
void reset_syscalls() noexcept { g_syscalls = real_syscalls(); }

}  // namespace coproc::detail
