// coproc/worker_limits.hpp — limits a worker runs under: resource limits,
// nice value, CPU affinity. Set in WorkerOptions::limits (and so
// PoolOptions::worker.limits); applied in the child before the target runs,
// in fork and spawn mode alike.
//
//   coproc::WorkerOptions options;
//   options.limits.address_space_bytes = 2ull << 30;   // 2 GiB: bad_alloc beyond
//   options.limits.cpu_seconds = 60;                   // SIGXCPU, then SIGKILL
//   options.limits.nice = 10;                          // be polite
//   options.limits.cpus = {0};                         // only CPU 0
//   coproc::WorkerResource<M> w(options, target);
//
// What cannot be applied is a SpawnError from the constructor, naming the
// limit, before any worker starts: raising a limit above this process's hard
// limit, a nice value below this process's without the privilege, a CPU this
// process may not run on.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coproc {

struct WorkerLimits {
    /// RLIMIT_AS: the worker's virtual memory, in bytes (soft and hard).
    std::optional<std::uint64_t> address_space_bytes;
    /// RLIMIT_CPU: CPU seconds; past them the kernel sends SIGXCPU (the
    /// worker dies of it), and SIGKILL a second later (soft and hard + 1).
    std::optional<std::uint64_t> cpu_seconds;
    /// RLIMIT_NOFILE: open file descriptors (soft and hard).
    std::optional<std::uint64_t> open_files;
    /// The worker's nice value (-20..19), absolute, not added to this process's.
    std::optional<int> nice;
    /// The CPUs it may run on (sched_setaffinity); empty: as this process.
    std::vector<int> cpus;

    [[nodiscard]] bool empty() const noexcept {
        return !address_space_bytes && !cpu_seconds && !open_files && !nice && cpus.empty();
    }
};

namespace detail {
/// In the host, before a worker starts: throws SpawnError naming the first
/// limit that this process could not apply to a child of its own.
void check_limits(const WorkerLimits& limits);
/// In the child, before the target: applies them. On failure returns false
/// and writes a one-line reason into `why` (no allocation: async-signal-safe
/// enough for a forked child). Never throws.
bool apply_limits(const WorkerLimits& limits, char* why, std::size_t why_size) noexcept;
/// apply_limits in a forked child: on failure, the reason on stderr and
/// _exit(125) (the host's constructor then reports the exit).
void apply_limits_or_exit(const WorkerLimits& limits) noexcept;
/// The limits as text, for a spawned program's environment, and back
/// (decode throws SpawnError on malformed text).
[[nodiscard]] std::string encode_limits(const WorkerLimits& limits);
[[nodiscard]] WorkerLimits decode_limits(std::string_view text);
}  // namespace detail

}  // namespace coproc
