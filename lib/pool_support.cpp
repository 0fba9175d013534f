// The pool's system needs (see pool_support.hpp).
#include "coproc/detail/pool_support.hpp"

#include <poll.h>
#include <sched.h>

#include <array>
#include <cerrno>
#include <vector>

#include "coproc/detail/unique_fd.hpp"
#include "syscall_seam.hpp"

namespace coproc::detail {

std::size_t wait_any_readable(std::span<const int> fds, std::span<char> ready, Deadline deadline) {
    // On the stack for the usual few workers: a pool waits here per result.
    std::array<pollfd, 64> small{};
    std::vector<pollfd> large;
    pollfd* set = small.data();
    if (fds.size() > small.size()) {
        large.resize(fds.size());
        set = large.data();
    }
    for (std::size_t i = 0; i < fds.size(); ++i) set[i] = {fds[i], POLLIN, 0};
    for (;;) {
        const int rc = syscalls().poll(set, fds.size(), poll_timeout(deadline));
        if (rc < 0) {
            if (errno == EINTR) continue;
            throw_system_error(errno, "poll");
        }
        // poll rounds to milliseconds: never report a timeout before the deadline.
        if (rc == 0 && deadline && Clock::now() < *deadline) continue;
        for (std::size_t i = 0; i < fds.size(); ++i) ready[i] = set[i].revents != 0 ? 1 : 0;
        return static_cast<std::size_t>(rc);
    }
}

std::size_t usable_cpus() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    const int n = CPU_COUNT(&set);
    return n > 0 ? static_cast<std::size_t>(n) : 1;
}

}  // namespace coproc::detail
