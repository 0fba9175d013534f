// coproc/unique_fd.hpp — coproc::UniqueFd, the move-only owner of a file
// descriptor: what a messenger built on an fd you made takes.
//
//   int sv[2];
//   socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
//   coproc::MultiMessenger<int> m{coproc::UniqueFd(sv[0])};  // owns sv[0] now
//
// Compiled in lib/unique_fd.cpp.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <utility>

namespace coproc {

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

}  // namespace coproc
