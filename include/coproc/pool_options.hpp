// coproc/pool_options.hpp — the settings, progress, statistics and errors of
// a Pool (pool.hpp).
//
//   coproc::PoolOptions options{.workers = 4, .max_retries = 3, .task_timeout = std::chrono::seconds(30)};
//   coproc::Pool<Job, Answer> pool(solve, options);
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "coproc/detail/remote_hub.hpp"
#include "coproc/error.hpp"
#include "coproc/worker_resource.hpp"

namespace coproc {

/// A pool cannot run a task: it was shut down, or it gave up (restarts too
/// frequent, a worker's initializer failed).
class PoolError : public Error {
public:
    using Error::Error;
};
/// A remote worker was lost (died, hung, cut off) while holding the task,
/// more than max_retries times (coproc/remote_pool.hpp).
class RemoteWorkerLost : public ChannelClosed {
public:
    using ChannelClosed::ChannelClosed;
};
/// The task was cancelled before a worker took it.
class TaskCancelled : public PoolError {
public:
    using PoolError::PoolError;
};

struct PoolOptions {
    /// Worker processes; 0: the CPUs this process may run on.
    std::size_t workers = 0;
    /// Times a task is run again after a worker that held it died.
    std::size_t max_retries = 2;
    /// A worker silent for this long per task it holds is killed; the task
    /// that hangs fails with Timeout. 0: no limit.
    std::chrono::milliseconds task_timeout{0};
    /// More than max_restarts worker restarts within restart_period and the
    /// pool gives up.
    std::size_t max_restarts = 10;
    std::chrono::milliseconds restart_period{10'000};
    /// A worker is replaced after running this many tasks; 0: never.
    std::size_t max_tasks_per_worker = 0;
    /// Tasks a worker may hold beyond the one it runs (at least two chunks):
    /// enough to keep it busy, few enough that an urgent task submitted late
    /// overtakes the rest.
    std::size_t window = 64;
    /// Runs once in each worker before its first task (load a model, open a
    /// file). If it throws, the pool's constructor throws PoolError with its
    /// message (a replacement's failure makes the pool give up).
    std::function<void()> initializer{};
    /// start_timeout (covers the initializer), close_grace, term_grace,
    /// parent_death_signal, messenger options: as for a WorkerResource.
    WorkerOptions worker{};
    /// Workers on other machines (coproc::listen_for_workers,
    /// coproc/remote_pool.hpp, libcoproc-bus): they join and leave while
    /// the pool runs and serve it beside the local ones. With it, workers
    /// = 0 means no local worker (tasks wait for a remote one to join).
    std::shared_ptr<RemoteWorkers> remote{};
};

/// Progress of a map: tasks done, failed, and the total.
struct PoolProgress {
    std::size_t done = 0;
    std::size_t failed = 0;
    std::size_t total = 0;
};

/// What a pool has done so far. Formattable with fmt.
struct PoolStats {
    std::uint64_t submitted = 0;  // tasks handed to the pool
    std::uint64_t done = 0;       // tasks that returned a result
    std::uint64_t failed = 0;     // tasks that failed (exception, retries exhausted, timeout, cancel, shutdown)
    std::uint64_t retried = 0;    // task runs repeated after a worker died under them
    std::uint64_t restarts = 0;   // workers replaced after a death or a timeout
    std::uint64_t recycled = 0;   // workers replaced after max_tasks_per_worker
    struct Worker {
        long pid = 0;  // 0 for a remote worker
        std::uint64_t tasks_served = 0;
        std::string remote{};  // a remote worker's label (host:pid); empty for a local one
    };
    std::vector<Worker> workers;  // the live workers, remote ones joined now included
};

/// How map and map_unordered cut and rank their tasks.
struct MapOptions {
    /// Tasks per chunk (one frame each way); 0: about four chunks per worker,
    /// as multiprocessing.Pool.map does.
    std::size_t chunksize = 0;
    /// Priority of every chunk; unset: the lowest of its tasks' priorities.
    std::optional<double> priority{};
    /// Called as results arrive.
    std::function<void(const PoolProgress&)> progress{};
};

}  // namespace coproc

/// PoolStats(submitted=10, done=9, failed=1, retried=0, restarts=0, recycled=0, workers=[1234: 5, 1235: 4])
template <>
struct fmt::formatter<coproc::PoolStats> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::PoolStats& s, Ctx& ctx) const {
        auto out = fmt::format_to(ctx.out(),
                                  "PoolStats(submitted={}, done={}, failed={}, retried={}, restarts={}, recycled={}, "
                                  "workers=[",
                                  s.submitted, s.done, s.failed, s.retried, s.restarts, s.recycled);
        for (std::size_t i = 0; i < s.workers.size(); ++i)
            if (s.workers[i].remote.empty())
                out = fmt::format_to(out, "{}{}: {}", i == 0 ? "" : ", ", s.workers[i].pid, s.workers[i].tasks_served);
            else
                out =
                    fmt::format_to(out, "{}{}: {}", i == 0 ? "" : ", ", s.workers[i].remote, s.workers[i].tasks_served);
        return fmt::format_to(out, "])");
    }
};
