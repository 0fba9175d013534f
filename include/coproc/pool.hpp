// coproc/pool.hpp — Pool<Task, Result>: worker processes that run one
// function over many tasks, with priorities, futures and map, and that are
// replaced when they die without losing a task.
//
//   int square(const int& x) { return x * x; }
//   coproc::Pool<int, int> pool(square);                 // one worker per usable CPU
//   auto f = pool.submit(7);                              // a future
//   std::vector<int> all = pool.map(std::vector{1, 2, 3}); // results in input order
//   int r = f.get();                                      // 49
//
// Fork mode: the workers run `fn`, a copy of the function object made when
// the pool starts. They are forked by a fork server, a single-threaded child
// the pool forks in its constructor: construct the pool before the host
// starts threads (as for any fork); after that, replacements are safe
// whatever threads the host runs, since the server, not the host, forks them.
//
// Supervision: a worker that dies (a crash, a kill, _exit) is reaped and
// replaced; each task it held is retried alone (so a poison task fails
// alone), up to max_retries times, then fails with WorkerDied. A worker
// silent past task_timeout per task it holds is killed; the task that hangs
// fails with Timeout.
// More than max_restarts restarts within restart_period and the pool gives
// up: every pending and later task fails with PoolError naming the last exit
// statuses. A task's exception is that task's failure only.
//
// Thread-safety: none. Use a pool and its futures from one thread. Nothing
// runs in the background: the pool makes progress inside its calls
// (submit, map, a future's get/wait, stats, shutdown).
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "coproc/detail/pool_engine.hpp"
#include "coproc/detail/pool_launcher.hpp"
#include "coproc/detail/pull_iterator.hpp"
#include "coproc/detail/spawn.hpp"
#include "coproc/error.hpp"
#include "coproc/pool_options.hpp"
#include "coproc/priority.hpp"

namespace coproc {

template <class Task, class Result>
class Pool {
    using Job = detail::PoolJob<Result>;

public:
    using Duration = std::chrono::nanoseconds;
    class Future;
    class UnorderedRange;

    /// Starts the workers (see the top: before the host starts threads) and
    /// waits until each has run its initializer. `fn` is called as
    /// fn(const Task&) in the workers and returns a Result (both
    /// cereal-serializable and default-constructible). Throws SpawnError if
    /// a worker cannot be started, PoolError if an initializer failed.
    template <class F>
        requires std::is_invocable_r_v<Result, std::decay_t<F>&, const Task&>
    explicit Pool(F&& fn, PoolOptions options = {})
        : engine_(std::make_shared<Engine>(std::function<Result(const Task&)>(std::forward<F>(fn)), std::nullopt,
                                           std::move(options))) {
        engine_->start();
    }

    /// Spawn mode: each worker is `program`, whose main() returns
    /// coproc::pool_worker_main<Task, Result>(fn) (below). Started with
    /// posix_spawn, so any thread may construct the pool and every
    /// replacement is safe whatever the host's threads do. The same API
    /// otherwise; PoolOptions::initializer must be empty (the program passes
    /// its own to pool_worker_main): std::invalid_argument if not. Throws
    /// SpawnError, PoolError as the fork-mode constructor does.
    explicit Pool(const Executable& program, PoolOptions options = {})
        : engine_(std::make_shared<Engine>(std::function<Result(const Task&)>{}, program, std::move(options))) {
        engine_->start();
    }

    Pool(Pool&&) noexcept = default;
    Pool& operator=(Pool&&) noexcept = default;
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;
    /// shutdown(false): pending and running tasks fail with PoolError; each
    /// worker gets a close request, close_grace, SIGTERM, term_grace,
    /// SIGKILL and is reaped; then the fork server. Never throws.
    ~Pool() {
        if (engine_) engine_->shutdown(false);
    }

    /// Queues `task` (priority read as a message's: see priority.hpp) and
    /// hands it to a worker if one has room. Never waits for a result;
    /// blocks only while a worker's socket is full.
    [[nodiscard]] Future submit(Task task) {
        const double p = message_priority(task);
        return submit(std::move(task), p);
    }
    [[nodiscard]] Future submit(Task task, double priority) {
        auto job = std::make_shared<Job>(1);
        job->chunk = engine_->enqueue(job, 0, std::move(task), priority);
        engine_->dispatch();  // results are taken in by the calls that wait
        return Future(std::move(job), engine_);
    }

    /// Runs fn over `tasks` and returns the results in input order. Blocks
    /// until all are done; throws the first failed task's exception (by
    /// input order) once all are done.
    template <class Range>
    [[nodiscard]] std::vector<Result> map(const Range& tasks, MapOptions options = {}) {
        auto job = engine_->enqueue_map(tasks, options, false);
        while (!job->complete()) engine_->step(std::nullopt);
        if (job->failed != 0)
            for (std::size_t i = 0; i < job->state.size(); ++i)
                if (job->state[i] == 2) std::rethrow_exception(job->errors[i]);
        return std::move(job->results);
    }

    /// Runs fn over `tasks`; a lazy range of (input index, result) in
    /// completion order. Advancing to a failed task throws its exception
    /// (the range goes on after it). The pool must outlive the range.
    template <class Range>
    [[nodiscard]] UnorderedRange map_unordered(const Range& tasks, MapOptions options = {}) {
        return UnorderedRange(engine_->enqueue_map(tasks, options, true), engine_);
    }

    /// Waits for the queued tasks (wait = true; blocks while they run) or
    /// fails them with PoolError (false), then ends the workers as the
    /// destructor does. Later submits fail with PoolError. Never throws.
    void shutdown(bool wait = true) noexcept { engine_->shutdown(wait); }

    /// Never blocks beyond taking in results already there.
    [[nodiscard]] PoolStats stats() const { return engine_->stats(); }
    /// The number of workers the pool keeps.
    [[nodiscard]] std::size_t size() const noexcept { return engine_->size(); }

    /// One task's result. Move-only; get() moves the result out (once).
    class Future {
    public:
        Future() = default;
        /// True once the task finished (result or failure). Never blocks
        /// beyond taking in results already there.
        [[nodiscard]] bool ready() const {
            if (!job_->complete()) poke(detail::deadline_after(Duration::zero()));
            return job_->complete();
        }
        /// Blocks until the task finished.
        void wait() const {
            while (!job_->complete()) poke(std::nullopt);
        }
        /// Blocks at most `timeout`; true if the task finished.
        [[nodiscard]] bool wait(Duration timeout) const {
            const auto deadline = detail::deadline_after(timeout);
            while (!job_->complete()) {
                if (deadline && detail::Clock::now() >= *deadline) return false;
                poke(deadline);
            }
            return true;
        }
        /// Blocks until the task finished; returns its result or throws its
        /// exception (its C++ type kept for registered types, else
        /// RemoteError), WorkerDied (retries exhausted), Timeout
        /// (task_timeout), TaskCancelled, PoolError.
        [[nodiscard]] Result get() {
            wait();
            return take();
        }
        /// The same, but throws Timeout if the task is not done within `timeout`.
        [[nodiscard]] Result get(Duration timeout) {
            if (!wait(timeout)) throw Timeout("coproc::Pool: the task did not finish within the get timeout");
            return take();
        }
        /// Cancels the task if no worker has it yet: true, and get() throws
        /// TaskCancelled. False if it runs or ran.
        bool cancel() {
            auto engine = engine_.lock();
            return engine && !job_->complete() && engine->cancel(job_->chunk);
        }

    private:
        friend class Pool;
        Future(std::shared_ptr<Job> job, std::weak_ptr<detail::PoolEngineBase> engine)
            : job_(std::move(job)), engine_(std::move(engine)) {}
        void poke(detail::Deadline deadline) const {
            auto engine = engine_.lock();
            if (!engine) throw PoolError("coproc::Pool: the pool is gone");  // unreachable: shutdown resolves all
            engine->step(deadline);
        }
        Result take() {
            if (job_->state[0] == 2) std::rethrow_exception(job_->errors[0]);
            if (job_->taken) throw PoolError("coproc::Pool: the result was already taken by get()");
            job_->taken = true;
            return std::move(job_->results[0]);
        }
        std::shared_ptr<Job> job_;
        std::weak_ptr<detail::PoolEngineBase> engine_;
    };

    /// The range map_unordered returns: single pass.
    class UnorderedRange {
    public:
        /// ++ blocks for the next result; advancing onto a failed task
        /// throws its exception, advancing again goes on.
        using iterator = detail::PullIterator<UnorderedRange, std::pair<std::size_t, Result>>;

        iterator begin() {
            advance();
            return iterator(this);
        }
        std::default_sentinel_t end() const noexcept { return {}; }

    private:
        friend class Pool;
        friend iterator;
        UnorderedRange(std::shared_ptr<Job> job, std::weak_ptr<detail::PoolEngineBase> engine)
            : job_(std::move(job)), engine_(std::move(engine)) {}
        void advance() {
            current_.reset();
            while (job_->completed_head == job_->completed.size()) {
                if (delivered_ == job_->state.size()) return;
                auto engine = engine_.lock();
                if (!engine) throw PoolError("coproc::Pool: the pool is gone");
                engine->step(std::nullopt);
            }
            const std::size_t i = job_->completed[job_->completed_head++];
            ++delivered_;
            if (job_->state[i] == 2) std::rethrow_exception(job_->errors[i]);
            current_.emplace(i, std::move(job_->results[i]));
        }
        std::shared_ptr<Job> job_;
        std::weak_ptr<detail::PoolEngineBase> engine_;
        std::size_t delivered_ = 0;
        std::optional<std::pair<std::size_t, Result>> current_;
    };

private:
    using Engine = detail::PoolEngine<Task, Result>;
    std::shared_ptr<Engine> engine_;
};

/// A spawn-mode pool worker program's whole main(): serves the Pool that
/// spawned it, running fn(const Task&) for each task after `initializer`
/// (may be empty; if it throws, the pool's constructor throws PoolError with
/// its message). Returns the exit code for main() to return. Call it first
/// thing in main(), before starting threads (it edits the environment).
/// If this program was not started by a Pool (run by hand, say), prints one
/// line on stderr and returns 2; if the host has already exited, returns 1.
template <class Task, class Result, class F>
    requires std::is_invocable_r_v<Result, std::decay_t<F>&, const Task&>
int pool_worker_main(F&& fn, std::function<void()> initializer = {}) {
    using Messenger = MultiMessenger<detail::PoolMessage<Task, Result>>;
    detail::SpawnedChannel channel;
    if (int code = 0; !detail::take_spawned_channel(channel, code)) return code;
    const std::size_t max_tasks = detail::take_pool_max_tasks();
    std::function<Result(const Task&)> f(std::forward<F>(fn));
    auto call = [&](Messenger& m) { return detail::serve_pool<Task, Result>(m, f, initializer, max_tasks); };
    const int code = detail::serve_as_worker<Messenger>(
        detail::LinkEnd{std::move(channel.stream), std::move(channel.side)}, channel.settings.messenger, call);
    std::fflush(nullptr);
    return code;
}

}  // namespace coproc
