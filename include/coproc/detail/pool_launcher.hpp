// coproc/detail/pool_launcher.hpp — how a pool starts, signals and reaps its
// workers: forked by its fork server, or spawned as a program of the user's.
// Compiled in lib/pool_launcher.cpp. Internal.
#pragma once

#include <map>
#include <memory>

#include "coproc/detail/child_process.hpp"
#include "coproc/detail/deadline.hpp"
#include "coproc/detail/link.hpp"
#include "coproc/detail/spawn.hpp"
#include "coproc/error.hpp"
#include "coproc/worker_resource.hpp"

namespace coproc::detail {

/// Not thread-safe; each call may block as its contract says.
class PoolLauncher {
public:
    virtual ~PoolLauncher() = default;
    struct Started {
        long pid = 0;
        LinkEnd end;  // the host's end of the worker's link (side channel optional)
    };
    /// A new worker. Throws SpawnError.
    [[nodiscard]] virtual Started start(Deadline deadline) = 0;
    /// Sends `sig` to worker `pid` (no-op once reaped). Throws SpawnError.
    virtual void signal(long pid, int sig) = 0;
    /// Waits up to `grace` for worker `pid` to exit, then SIGKILLs it;
    /// reaps it and returns its status. Throws SpawnError.
    [[nodiscard]] virtual ExitStatus reap(long pid, Clock::duration grace) = 0;

protected:
    PoolLauncher() = default;
    PoolLauncher(const PoolLauncher&) = default;
    PoolLauncher& operator=(const PoolLauncher&) = default;
};

/// Fork mode: every worker is forked by a fork server, forked here (call
/// it before the host starts threads); body(context, fd) runs in each.
[[nodiscard]] std::unique_ptr<PoolLauncher> fork_launcher(ChildBody body, void* context, int parent_death_signal);

/// Spawn mode: every worker is `program` started with posix_spawn (safe
/// from any thread), told its messenger options and `max_tasks` (0: none)
/// through its environment (COPROC_POOL_MAX_TASKS, read by
/// coproc::pool_worker_main).
[[nodiscard]] std::unique_ptr<PoolLauncher> spawn_launcher(const Executable& program, const SpawnSettings& settings,
                                                           std::size_t max_tasks);

/// In a spawned pool worker: COPROC_POOL_MAX_TASKS (removed from the
/// environment, so programs it starts do not see it); 0 if unset. Throws
/// SpawnError if it is malformed.
[[nodiscard]] std::size_t take_pool_max_tasks();

}  // namespace coproc::detail
