// coproc/detail/unique_fd.hpp — the move-only fd owner, EINTR retry in one
// place, and the one function that turns a failed system call into
// SystemError. Compiled in lib/unique_fd.cpp. Internal.
#pragma once

#include <cerrno>
#include <utility>

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

/// Two fds made together: a socketpair's ends, a pipe's read and write ends.
struct FdPair {
    UniqueFd first;
    UniqueFd second;
};

}  // namespace coproc::detail
