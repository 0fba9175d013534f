// coproc/detail/pool_support.hpp — what the pool's templates need from the
// system: waiting for any of several links, and how many CPUs this process
// may use. Compiled in lib/pool_support.cpp. Internal.
#pragma once

#include <cstddef>
#include <span>

#include "coproc/detail/deadline.hpp"

namespace coproc::detail {

/// Waits until one of `fds` is readable (or hung up, or in error) or the
/// deadline passes; ready[i] becomes 1 for each such fds[i], 0 for the
/// others (ready.size() == fds.size()). A negative fd is ignored. Returns how
/// many are ready; 0 means the deadline passed. Survives signals (the time
/// left is recomputed). Throws SystemError.
std::size_t wait_any_readable(std::span<const int> fds, std::span<char> ready, Deadline deadline);

/// The number of CPUs this process may run on (its affinity mask), at least 1.
[[nodiscard]] std::size_t usable_cpus() noexcept;

}  // namespace coproc::detail
