// coproc/detail/unique_fd.hpp — EINTR retry in one place, the one function
// that turns a failed system call into SystemError, and fd pairs. Compiled
// in lib/unique_fd.cpp. Internal.
#pragma once

#include <cerrno>
#include <utility>

#include "coproc/unique_fd.hpp"

namespace coproc::detail {

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

/// Throws SystemError for `err`, naming the operation.
[[noreturn]] void throw_system_error(int err, const char* operation);

/// Returns `result`; if it is -1, throws SystemError from errno.
inline long check_unix(long result, const char* operation) {
    if (result == -1) throw_system_error(errno, operation);
    return result;
}

using coproc::UniqueFd;

/// Two fds made together: a socketpair's ends, a pipe's read and write ends.
struct FdPair {
    UniqueFd first;
    UniqueFd second;
};

}  // namespace coproc::detail
