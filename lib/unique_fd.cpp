// The fd owner's out-of-line parts and the one place a failed system call
// becomes a SystemError.
#include "coproc/detail/unique_fd.hpp"

#include <system_error>

#include "coproc/error.hpp"
#include "inline_syscall.hpp"

namespace coproc::detail {

void throw_system_error(int err, const char* operation) {
    throw SystemError(std::error_code(err, std::generic_category()), operation);
}

}  // namespace coproc::detail

namespace coproc {

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) {
        // Never retried: Linux releases the descriptor even when close() fails.
        // Inline (inline_syscall.hpp): a worker closes its channel as it exits,
        // and libc's close() is one more page to fault in there.
        (void)detail::sys::close(fd_);
    }
    fd_ = fd;
}

void UniqueFd::close() {
    const int fd = std::exchange(fd_, -1);
    if (fd < 0) return;
    if (const long rc = detail::sys::close(fd); rc < 0 && rc != -EINTR)
        detail::throw_system_error(static_cast<int>(-rc), "close");
}

}  // namespace coproc
