// coproc/detail/pool_engine.hpp — the host side of a Pool: the queue of
// pending chunks and maps' feeds (lowest priority first, FIFO among ties),
// the workers and the chunks each holds, dispatch, results, supervision
// (reap, replace, retry, restart intensity, task timeouts) and shutdown.
// Single-threaded: it runs inside the pool's and its futures' calls.
// Internal.
#pragma once

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "coproc/detail/deadline.hpp"
#include "coproc/detail/fork_registry.hpp"
#include "coproc/detail/output_capture.hpp"
#include "coproc/detail/pool_launcher.hpp"
#include "coproc/detail/pool_support.hpp"
#include "coproc/detail/pool_worker.hpp"
#include "coproc/detail/remote_hub.hpp"
#include "coproc/error.hpp"
#include "coproc/messenger.hpp"
#include "coproc/pool_options.hpp"
#include "coproc/priority.hpp"

namespace coproc::detail {

// Where a group of tasks' results go: one submit's, or one map's.
template <class Result>
struct PoolJob {
    explicit PoolJob(std::size_t n) : results(n), state(n, 0) {}
    std::vector<Result> results;
    std::vector<std::uint8_t> state;  // 0 pending, 1 done, 2 failed
    // One per task once a task failed; empty before (a map's buffers are
    // fresh memory, and every page of it costs a fault).
    std::vector<std::exception_ptr> errors;
    void set_error(std::size_t i, std::exception_ptr e) {
        if (errors.empty()) errors.resize(state.size());
        errors[i] = std::move(e);
    }
    std::size_t done = 0;
    std::size_t failed = 0;
    // Indices in completion order (map_unordered), read from completed_head
    // on. A vector: a std::deque allocates even when empty, per submit.
    std::vector<std::size_t> completed;
    std::size_t completed_head = 0;
    bool track_completion = false;
    std::function<void(const PoolProgress&)> progress;
    std::uint64_t chunk = 0;  // a submit's chunk (for cancel)
    bool taken = false;       // a submit's result was moved out

    [[nodiscard]] bool complete() const noexcept { return done + failed == state.size(); }
    void finish(std::size_t i, bool ok) {
        if (ok)
            ++done;
        else
            ++failed;
        if (track_completion) completed.push_back(i);
        if (progress) progress(PoolProgress{done, failed, state.size()});
    }
};

// The pool's state, behind a shared_ptr so futures can reach it while it
// lives (weak_ptr) and never after.
class PoolEngineBase {
public:
    virtual ~PoolEngineBase() = default;
    // Makes progress: dispatches, waits for results until `deadline`.
    virtual void step(Deadline deadline) = 0;
    // Removes a pending chunk; false if a worker has it (or it is gone).
    virtual bool cancel(std::uint64_t chunk) = 0;

protected:
    PoolEngineBase() = default;
    PoolEngineBase(const PoolEngineBase&) = default;
    PoolEngineBase& operator=(const PoolEngineBase&) = default;
};

template <class Task, class Result>
class PoolEngine final : public PoolEngineBase {
    using Message = PoolMessage<Task, Result>;
    using Messenger = MultiMessenger<Message>;
    using Job = PoolJob<Result>;

    struct Chunk {
        Message request;  // its id and tasks, kept until its results came (for retries)
        double priority = no_priority;
        std::uint64_t seq = 0;
        std::size_t retries = 0;
        bool quarantined = false;  // held by a worker that died: runs alone until it succeeds
        std::shared_ptr<Job> job;
        std::size_t first = 0;  // the index of its first task in the job
    };
    struct Worker {
        long pid = 0;
        std::unique_ptr<Messenger> messenger;
        FdRegistration registration;       // workers forked later (by the host) close our end...
        FdRegistration side_registration;  // ...and its side channel (spawn mode)
        std::deque<std::uint64_t> held;    // chunks sent, oldest (running) first
        std::size_t held_tasks = 0;
        Clock::time_point last_progress{};  // its last answer, or when it got work while idle
        bool retiring = false;              // it said its last answer (max_tasks_per_worker)
        // A remote worker: the hub's id of it (0: a local worker), whether it
        // said it is ready, and whether it is gone (removed after the step).
        std::uint64_t remote = 0;
        bool remote_ready = false;
        bool remote_gone = false;
        std::string label;
        std::uint64_t served = 0;
    };
    // The worker's entry point, run in a process the fork server forked.
    struct WorkerContext {
        std::function<Result(const Task&)>* fn;
        const PoolOptions* options;
        int stdout_fd;  // the workers' fds 1 and 2 (-1: the host's)
        int stderr_fd;
    };

public:
    /// Fork mode with `fn` (program empty), or spawn mode with `program`.
    PoolEngine(std::function<Result(const Task&)> fn, std::optional<Executable> program, PoolOptions options)
        : fn_(std::move(fn)), program_(std::move(program)), options_(std::move(options)) {
        if (options_.remote) {
            hub_ = std::dynamic_pointer_cast<RemoteHub>(options_.remote);
            if (!hub_)
                throw std::invalid_argument(
                    "coproc::Pool: PoolOptions::remote must come from coproc::listen_for_workers");
        }
        // With remote workers, 0 local workers means none.
        if (options_.workers == 0 && !hub_) options_.workers = usable_cpus();
        if (options_.window == 0) options_.window = 1;
        if (program_ && options_.initializer)
            throw std::invalid_argument(
                "coproc::Pool: a spawned worker program runs its own initializer (pool_worker_main's argument); "
                "PoolOptions::initializer is for fork mode");
        for (const OutputSink* sink : {&options_.worker.std_out, &options_.worker.std_err})
            if (sink->kind() == OutputSink::Kind::lines)
                throw std::invalid_argument(
                    "coproc::Pool: a lines sink is for one WorkerResource; a pool's workers take inherit, discard "
                    "or file sinks (they all append to one file)");
    }
    PoolEngine(const PoolEngine&) = delete;
    PoolEngine& operator=(const PoolEngine&) = delete;
    ~PoolEngine() override { shutdown(false); }

    // Starts the fork server (fork mode), then the workers; waits for each
    // to be ready.
    void start() {
        check_limits(options_.worker.limits);
        // Opened once: every worker, first or restarted, gets the same files.
        output_ = std::make_unique<OutputCapture>(options_.worker.std_out, options_.worker.std_err);
        if (program_) {
            server_ = spawn_launcher(*program_,
                                     SpawnSettings{options_.worker.parent_death_signal, options_.worker.messenger,
                                                   options_.worker.limits, output_->child_fd(0), output_->child_fd(1)},
                                     options_.max_tasks_per_worker);
        } else {
            context_ = WorkerContext{&fn_, &options_, output_->child_fd(0), output_->child_fd(1)};
            server_ = fork_launcher(&worker_main, &context_, options_.worker.parent_death_signal);
        }
        workers_.resize(options_.workers);
        const Deadline deadline = deadline_after(options_.worker.start_timeout);
        for (auto& w : workers_) launch(w);
        for (auto& w : workers_) await_ready(w, deadline, true);
        // After the fork server: the hub's threads must not exist when it forks.
        if (hub_) hub_->start(typeid(Task).name(), typeid(Result).name(), type_fingerprint<Message>);
    }

    [[nodiscard]] std::size_t size() const noexcept { return options_.workers; }

    // Queues `task` as a chunk of its own, task `first` of `job`; returns
    // the chunk's id.
    std::uint64_t enqueue(const std::shared_ptr<Job>& job, std::size_t first, Task task, double priority) {
        const std::uint64_t id = ++last_chunk_;
        Chunk& c = new_chunk(id, job, first);
        c.request.tasks.push_back(std::move(task));
        queue_new(id, c, priority);
        return id;
    }

    template <class Range>
    std::shared_ptr<Job> enqueue_map(const Range& tasks, const MapOptions& options, bool unordered) {
        const auto n = static_cast<std::size_t>(std::distance(std::begin(tasks), std::end(tasks)));
        auto job = std::make_shared<Job>(n);
        job->track_completion = unordered;
        job->progress = options.progress;
        std::size_t chunk = options.chunksize;
        if (chunk == 0) {
            // About four chunks per worker, remote ones joined now included.
            const std::size_t serving = std::max<std::size_t>(1, workers_.size());
            chunk = std::max<std::size_t>(1, (n + 4 * serving - 1) / (4 * serving));
        }
        if (options.priority || !has_message_priority<Task>) {
            // One priority for all: the tasks wait in a feed, cut into
            // chunks as workers have room.
            stats_.submitted += n;
            if (n == 0) return job;
            if (broken_ || closed_) {
                fail_tasks(*job, 0, n, stop_reason());
                return job;
            }
            const std::uint64_t seq = ++last_chunk_;
            Feed& feed = feeds_[seq];
            try {
                feed.tasks.reserve(n);
                for (const auto& task : tasks) feed.tasks.push_back(static_cast<const Task&>(task));
            } catch (...) {
                feeds_.erase(seq);  // a task's copy threw: not queued
                throw;
            }
            feed.job = job;
            feed.chunk = chunk;
            feed.priority = rank(options.priority.value_or(no_priority));
            queue(feed.priority, seq, feed_entry);
            dispatch();
            return job;
        }
        auto it = std::begin(tasks);
        for (std::size_t first = 0; first < n; first += chunk) {
            const std::size_t end = std::min(n, first + chunk);
            const std::uint64_t id = ++last_chunk_;
            Chunk& c = new_chunk(id, job, first);
            auto& part = c.request.tasks;
            double priority = no_priority;
            try {
                part.reserve(end - first);
                for (std::size_t i = first; i < end; ++i, ++it) {
                    part.push_back(static_cast<const Task&>(*it));
                    if constexpr (has_message_priority<Task>)
                        if (!options.priority) priority = std::min(priority, message_priority(part.back()));
                }
            } catch (...) {
                chunks_.erase(id);  // a task's copy threw: not queued
                throw;
            }
            queue_new(id, c, options.priority.value_or(priority));
        }
        dispatch();
        return job;
    }

    // Hands pending chunks, lowest priority first, to the workers that have
    // room. Never waits for an answer; blocks only while a socket is full.
    void dispatch() {
        if (pending_.empty() || broken_ || closed_) return;
        outbox_.assign(workers_.size(), {});
        while (!pending_.empty()) {
            const auto [priority, seq, entry] = *pending_.begin();
            const bool quarantined = entry != feed_entry && chunks_.at(entry).quarantined;
            // A quarantined chunk goes to an idle worker, alone: if that
            // worker dies, this chunk did it.
            Worker* best = nullptr;
            std::size_t best_index = 0;
            for (std::size_t i = 0; i < workers_.size(); ++i) {
                Worker& w = workers_[i];
                if (!dispatchable(w) || w.retiring || isolating(w)) continue;
                if (quarantined ? !w.held.empty() : (w.held.size() >= 2 && w.held_tasks >= options_.window)) continue;
                if (best == nullptr || w.held_tasks < best->held_tasks) {
                    best = &w;
                    best_index = i;
                }
            }
            if (best == nullptr) break;  // strict priority order: nothing overtakes it
            std::uint64_t id = entry;
            if (entry == feed_entry)
                id = cut(seq);
            else
                pop_pending();
            Chunk& c = chunks_.at(id);
            if (best->held.empty()) best->last_progress = Clock::now();
            best->held.push_back(id);
            best->held_tasks += c.request.tasks.size();
            outbox_[best_index].push_back(std::cref(c.request));
        }
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            if (outbox_[i].empty()) continue;
            if (workers_[i].remote != 0) {
                packed_.clear();
                for (const Message& m : outbox_[i]) packed_.add([&m](std::string& bytes) { encode_append(bytes, m); });
                hub_->send(workers_[i].remote, packed_);
                continue;
            }
            try {
                workers_[i].messenger->send_norequest_multiple(outbox_[i]);
            } catch (const ChannelClosed&) {
                lost(workers_[i]);  // it died: its chunks go back to the queue
            }
        }
    }

    bool cancel(std::uint64_t chunk) override {
        auto it = chunks_.find(chunk);
        if (it == chunks_.end()) return false;
        const auto key = std::make_tuple(it->second.priority, it->second.seq, chunk);
        if (pending_.erase(key) == 0) return false;  // a worker has it
        fail_chunk(chunk, std::make_exception_ptr(TaskCancelled("coproc::Pool: the task was cancelled")));
        return true;
    }

    void step(Deadline deadline) override {
        if (closed_) return;
        dispatch();
        // Wake for the earliest task timeout too.
        Deadline wake = deadline;
        if (options_.task_timeout.count() > 0) {
            for (const auto& w : workers_) {
                if (w.held.empty() || !alive(w)) continue;
                const auto due = timeout_at(w);
                if (!wake || due < *wake) wake = due;
            }
        }
        fds_.clear();
        for (const auto& w : workers_) fds_.push_back(w.messenger ? w.messenger->fd() : -1);
        if (hub_) fds_.push_back(hub_->fd());
        ready_.assign(fds_.size(), 0);
        if (!fds_.empty()) (void)wait_any_readable(fds_, ready_, wake);
        // The workers polled: service() may add replacements after them.
        const std::size_t polled = workers_.size();
        for (std::size_t i = 0; i < polled; ++i)
            if (ready_[i] != 0 && workers_[i].messenger) service(workers_[i]);
        if (hub_ && ready_.back() != 0) take_hub_events();
        if (options_.task_timeout.count() > 0) {
            const auto now = Clock::now();
            for (auto& w : workers_) {
                if (w.held.empty() || !alive(w)) continue;
                if (now >= timeout_at(w)) timed_out(w);
            }
        }
        remove_gone_remotes();
        dispatch();
    }

    void shutdown(bool wait) noexcept {
        if (closed_) return;
        try {
            if (wait)
                while (!broken_ && (!pending_.empty() || held_total() != 0)) step(std::nullopt);
        } catch (...) {
            // a system error while waiting: fall through to the cleanup
        }
        closed_ = true;
        fail_all(std::make_exception_ptr(PoolError("coproc::Pool: the pool was shut down")));
        close_workers();
        server_.reset();
    }

    [[nodiscard]] PoolStats stats() const {
        PoolStats s = stats_;
        for (const auto& w : workers_)
            if (alive(w)) s.workers.push_back({w.pid, w.served, w.label});
        return s;
    }

private:
    [[noreturn]] static void worker_main(void* raw, int fd) noexcept {
        auto& ctx = *static_cast<WorkerContext*>(raw);
        redirect_output_or_exit(ctx.stdout_fd, ctx.stderr_fd, false);
        apply_limits_or_exit(ctx.options->worker.limits);
        auto run = [&ctx](Messenger& messenger) {
            return serve_pool<Task, Result>(messenger, *ctx.fn, ctx.options->initializer,
                                            ctx.options->max_tasks_per_worker);
        };
        child_exit(serve_as_worker<Messenger>(LinkEnd{UniqueFd(fd), {}}, ctx.options->worker.messenger, run));
    }

    // Starts a worker and builds its messenger.
    void launch(Worker& w) {
        auto started = server_->start(deadline_after(options_.worker.start_timeout));
        w = Worker{};
        w.pid = started.pid;
        w.registration = FdRegistration(started.end.stream.get());
        if (started.end.side) w.side_registration = FdRegistration(started.end.side.get());
        w.messenger = std::make_unique<Messenger>(std::move(started.end), options_.worker.messenger);
    }

    // Waits for the worker's hello and "ready" (its initializer ran).
    // Throws PoolError when the initializer failed, SpawnError when the
    // worker died or did not answer in time.
    void await_ready(Worker& w, Deadline deadline, bool first_start) {
        std::string why;
        try {
            if (w.messenger->link().await_hello(deadline)) {
                const auto remaining = deadline ? *deadline - Clock::now() : Clock::duration::max();
                Message ready = w.messenger->receive_blocking(Channel{}, std::max(remaining, Clock::duration::zero()));
                if (ready.kind == PoolMessageKind::ready) return;
                why = "it answered before it was ready";
            } else {
                why = "no handshake in time";
            }
        } catch (const ChannelClosed&) {
            why = "it exited during start-up";
        } catch (const Timeout&) {
            why = "its initializer did not finish within start_timeout";
        } catch (const Error& e) {
            if (!first_start || dynamic_cast<const ProtocolError*>(&e) != nullptr)
                why = e.what();
            else
                throw PoolError(fmt::format("coproc::Pool: a worker's initializer failed: {}", e.what()));
        } catch (const std::exception& e) {
            throw PoolError(fmt::format("coproc::Pool: a worker's initializer failed: {}", e.what()));
        }
        const ExitStatus status = server_->reap(w.pid, std::chrono::milliseconds(0));
        w.messenger.reset();
        throw SpawnError(fmt::format("coproc::Pool: worker {} did not start: {} ({})", w.pid, why, status.describe()));
    }

    // When worker `w` has taken too long: task_timeout for each task it
    // holds, counted from its last answer.
    [[nodiscard]] Clock::time_point timeout_at(const Worker& w) const {
        return w.last_progress +
               std::chrono::duration_cast<Clock::duration>(options_.task_timeout) * static_cast<long>(w.held_tasks);
    }

    [[nodiscard]] std::size_t held_total() const noexcept {
        std::size_t n = 0;
        for (const auto& w : workers_) n += w.held.size();
        return n;
    }

    // True while `w` runs a quarantined chunk: it was given that chunk
    // alone, and gets nothing else until it answers.
    [[nodiscard]] bool isolating(const Worker& w) const {
        return !w.held.empty() && chunks_.at(w.held.front()).quarantined;
    }

    // Takes in what worker `w` sent; handles its exit.
    void service(Worker& w) {
        try {
            for (Message& answer : w.messenger->receive_available()) take_answer(w, answer);
            if (w.messenger->link().peer_gone()) lost(w);
        } catch (const ChannelClosed&) {
            lost(w);
        } catch (const ProtocolError&) {
            lost(w);
        } catch (const std::exception&) {
            // An error frame: its initializer failed (after a restart) or
            // its loop broke; either way the worker is going.
            lost(w);
        }
    }

    void take_answer(Worker& w, Message& answer) {
        if (answer.kind != PoolMessageKind::results || w.held.empty() || w.held.front() != answer.chunk)
            throw ProtocolError("coproc::Pool: a worker answered out of order");
        // Checked while the worker still holds the chunk: the caller then
        // gives the worker up, and the chunk runs again elsewhere.
        if (answer.results.size() != chunks_.at(answer.chunk).request.tasks.size() ||
            answer.failed.size() != answer.errors.size())
            throw ProtocolError("coproc::Pool: a worker's answer does not match its chunk");
        auto node = chunks_.extract(answer.chunk);
        const Recycle recycle{*this, node};
        Chunk& c = node.mapped();
        w.held.pop_front();
        w.held_tasks -= c.request.tasks.size();
        w.last_progress = Clock::now();
        w.served += c.request.tasks.size();
        if (answer.last) w.retiring = true;
        Job& job = *c.job;
        const std::size_t n = answer.results.size();
        if (answer.failed.empty() && !job.track_completion && !job.progress) {
            // All done, and nobody watches task by task: the chunk's results
            // go in whole (the per-task loop below is most of a map's time
            // in the pool's thread).
            const auto first = static_cast<std::ptrdiff_t>(c.first);
            std::move(answer.results.begin(), answer.results.end(), job.results.begin() + first);
            std::fill_n(job.state.begin() + first, n, std::uint8_t{1});
            job.done += n;
            stats_.done += n;
            return;
        }
        std::size_t next_failed = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t at = c.first + i;
            if (next_failed < answer.failed.size() && answer.failed[next_failed] == i) {
                job.set_error(at, error_of(answer.errors[next_failed]));
                ++next_failed;
                job.state[at] = 2;
                ++stats_.failed;
                job.finish(at, false);
            } else {
                job.results[at] = std::move(answer.results[i]);
                job.state[at] = 1;
                ++stats_.done;
                job.finish(at, true);
            }
        }
    }

    // Chunks and queue entries are recycled (their nodes, and a chunk's
    // task vector): a map of many small chunks then allocates little per
    // chunk once the first ones are answered.
    using ChunkNode = typename std::unordered_map<std::uint64_t, Chunk>::node_type;
    static constexpr std::size_t max_spares = 1024;
    static constexpr std::size_t max_spare_tasks = 64;

    // A chunk for tasks of `job` from `first` on, with no tasks yet.
    Chunk& new_chunk(std::uint64_t id, const std::shared_ptr<Job>& job, std::size_t first) {
        Chunk* c = nullptr;
        if (spare_chunks_.empty()) {
            c = &chunks_[id];
        } else {
            ChunkNode node = std::move(spare_chunks_.back());
            spare_chunks_.pop_back();
            node.key() = id;
            c = &chunks_.insert(std::move(node)).position->second;
        }
        c->request.chunk = id;
        c->seq = id;
        c->job = job;
        c->first = first;
        return *c;
    }

    // A map's tasks not yet in chunks: one entry in pending_ (priority, seq,
    // feed_entry) stands for all of them, and dispatch() cuts a chunk off
    // whenever a worker has room. A map of many small chunks then costs the
    // queue one entry, and each chunk exists only while it is out.
    struct Feed {
        std::shared_ptr<Job> job;
        std::vector<Task> tasks;
        std::size_t next = 0;  // the first task not in a chunk yet
        std::size_t chunk = 1;
        double priority = no_priority;
    };
    static constexpr std::uint64_t feed_entry = std::numeric_limits<std::uint64_t>::max();

    // The next chunk of feed `seq` (at the head of pending_); its entry goes
    // once the last task is cut. The chunk keeps the feed's seq, so a retry
    // of it goes before the rest of its map.
    std::uint64_t cut(std::uint64_t seq) {
        Feed& f = feeds_.at(seq);
        const std::uint64_t id = ++last_chunk_;
        const std::size_t end = std::min(f.tasks.size(), f.next + f.chunk);
        Chunk& c = new_chunk(id, f.job, f.next);
        try {
            const auto from = f.tasks.begin() + static_cast<std::ptrdiff_t>(f.next);
            c.request.tasks.insert(c.request.tasks.end(), std::make_move_iterator(from),
                                   std::make_move_iterator(f.tasks.begin() + static_cast<std::ptrdiff_t>(end)));
        } catch (...) {
            chunks_.erase(id);  // not handed out
            throw;
        }
        c.priority = f.priority;
        c.seq = seq;
        f.next = end;
        if (f.next == f.tasks.size()) {
            pop_pending();
            feeds_.erase(seq);
        }
        return id;
    }

    void pop_pending() {
        auto done = pending_.extract(pending_.begin());
        if (spare_pending_.size() < max_spares) spare_pending_.push_back(std::move(done));
    }

    // Tasks [first, end) of `job` not settled yet fail with `error`.
    void fail_tasks(Job& job, std::size_t first, std::size_t end, const std::exception_ptr& error) {
        for (std::size_t at = first; at < end; ++at) {
            if (job.state[at] != 0) continue;
            job.state[at] = 2;
            job.set_error(at, error);
            ++stats_.failed;
            job.finish(at, false);
        }
    }

    // A priority as the queue orders it: NaN (no priority given) last.
    [[nodiscard]] static double rank(double priority) noexcept { return std::isnan(priority) ? no_priority : priority; }

    [[nodiscard]] std::exception_ptr stop_reason() const {
        return broken_ ? broken_ : std::make_exception_ptr(PoolError("coproc::Pool: the pool was shut down"));
    }

    // Puts a new chunk in the queue (or fails it if the pool is over).
    void queue_new(std::uint64_t id, Chunk& c, double priority) {
        stats_.submitted += c.request.tasks.size();
        c.priority = rank(priority);
        if (broken_ || closed_) {
            fail_chunk(id, stop_reason());
            return;
        }
        queue(c.priority, c.seq, id);
    }

    void queue(double priority, std::uint64_t seq, std::uint64_t id) {
        if (spare_pending_.empty()) {
            pending_.emplace(priority, seq, id);
            return;
        }
        auto node = std::move(spare_pending_.back());
        spare_pending_.pop_back();
        node.value() = std::make_tuple(priority, seq, id);
        pending_.insert(std::move(node));
    }

    // Keeps an answered or failed chunk's node for new_chunk(), emptied.
    void recycle(ChunkNode& node) noexcept {
        if (node.empty()) return;
        if (spare_chunks_.size() >= max_spares) {
            node = ChunkNode();
            return;
        }
        Chunk& c = node.mapped();
        auto tasks = std::move(c.request.tasks);
        tasks.clear();
        if (tasks.capacity() > max_spare_tasks) tasks = std::vector<Task>();  // a big chunk's: not kept
        c = Chunk{};
        c.request.tasks = std::move(tasks);
        try {
            spare_chunks_.push_back(std::move(node));
        } catch (...) {
            node = ChunkNode();  // no room: just freed
        }
    }
    // recycle() at scope exit.
    struct Recycle {
        PoolEngine& engine;
        ChunkNode& node;
        Recycle(PoolEngine& e, ChunkNode& n) noexcept : engine(e), node(n) {}
        Recycle(const Recycle&) = delete;
        Recycle& operator=(const Recycle&) = delete;
        ~Recycle() { engine.recycle(node); }
    };

    static std::exception_ptr error_of(const std::string& payload) {
        try {
            throw_error_payload(payload);
        } catch (...) {
            return std::current_exception();
        }
    }

    // Worker `w` is gone (or going): reap it, put its chunks back, replace
    // it. A worker answers a batch of chunks at once, so when it dies we do
    // not know which of the chunks it held it was running: each counts a
    // retry and is split into single tasks that run alone (quarantined), so
    // a poison task then kills only workers that hold nothing else.
    void lost(Worker& w) {
        if (w.remote != 0) {
            lost_remote(w);
            return;
        }
        if (!w.messenger) return;
        // Answers it sent before it went count (a send to it may fail
        // before we read them): they settle what it still held and whether
        // it left as planned.
        try {
            for (Message& answer : w.messenger->receive_available()) take_answer(w, answer);
        } catch (const std::exception&) {
            // an error frame or garbage: what was taken stands
        }
        const bool planned = w.retiring;
        ExitStatus status = ExitStatus::exited_with(-1);
        try {
            status = server_->reap(w.pid, std::chrono::seconds(1));
        } catch (const std::exception&) {
            give_up(std::make_exception_ptr(PoolError("coproc::Pool: its fork server is gone")));
        }
        w.messenger.reset();
        w.registration.reset();
        w.side_registration.reset();
        const long pid = w.pid;
        // Left as planned: what it held never started. Otherwise every chunk
        // it held is a suspect.
        for (const std::uint64_t id : w.held) {
            if (planned)
                requeue(id);
            else
                retry(id, std::make_exception_ptr(WorkerDied(pid, status)));
        }
        w.held.clear();
        w.held_tasks = 0;
        if (broken_ || closed_) return;
        if (planned) {
            ++stats_.recycled;
        } else if (!count_restart(status)) {
            return;
        }
        replace(w);
    }

    void timed_out(Worker& w) {
        const std::uint64_t id = w.held.front();
        const long pid = w.pid;
        if (w.remote != 0) {
            hub_->drop(w.remote);  // it is told; its late answers are ignored
        } else {
            try {
                server_->signal(pid, SIGKILL);
            } catch (const std::exception&) {
                // the server is gone: lost() gives up below
            }
        }
        if (w.held.size() == 1 && chunks_.at(id).request.tasks.size() == 1) {
            // The one task it held: that one hung.
            w.held.pop_front();
            w.held_tasks = 0;
            fail_chunk(id, std::make_exception_ptr(Timeout(fmt::format(
                               "coproc::Pool: the task ran longer than task_timeout ({} ms); worker {} was killed",
                               options_.task_timeout.count(), pid))));
        }
        // Several: which one hung is not known. They are retried alone (as
        // after a death), and the one that hangs times out alone.
        lost(w);
    }

    // A chunk a dead worker held: again (split into single tasks, each to
    // run alone) or, past max_retries, failed with `exhausted`.
    void retry(std::uint64_t id, const std::exception_ptr& exhausted) {
        auto node = chunks_.extract(id);
        Chunk& c = node.mapped();
        const std::size_t n = c.request.tasks.size();
        stats_.retried += n;
        if (c.retries + 1 > options_.max_retries) {
            chunks_.insert(std::move(node));
            fail_chunk(id, exhausted);
            return;
        }
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t nid = n == 1 ? id : ++last_chunk_;
            Chunk& part = new_chunk(nid, c.job, c.first + i);
            part.request.tasks.push_back(std::move(c.request.tasks[i]));
            part.priority = c.priority;
            part.seq = c.seq;  // keeps its place among its peers
            part.retries = c.retries + 1;
            part.quarantined = true;
            queue(part.priority, part.seq, nid);
        }
        recycle(node);
    }

    void requeue(std::uint64_t id) {
        const Chunk& c = chunks_.at(id);
        queue(c.priority, c.seq, id);
    }

    // Records a restart; false (and the pool gives up) past the intensity.
    bool count_restart(const ExitStatus& status) {
        const auto now = Clock::now();
        restarts_.push_back(now);
        last_statuses_.push_back(status);
        while (!restarts_.empty() && now - restarts_.front() > options_.restart_period) restarts_.pop_front();
        while (last_statuses_.size() > 5) last_statuses_.pop_front();
        ++stats_.restarts;
        if (restarts_.size() <= options_.max_restarts) return true;
        std::string statuses;
        for (const auto& s : last_statuses_) statuses += (statuses.empty() ? "" : ", ") + s.describe();
        give_up(std::make_exception_ptr(PoolError(fmt::format(
            "coproc::Pool: gave up after more than {} worker restarts within {} ms (last exit statuses: {})",
            options_.max_restarts, options_.restart_period.count(), statuses))));
        return false;
    }

    void replace(Worker& w) {
        try {
            launch(w);
            await_ready(w, deadline_after(options_.worker.start_timeout), false);
        } catch (const std::exception& e) {
            w.messenger.reset();
            give_up(std::make_exception_ptr(
                PoolError(fmt::format("coproc::Pool: gave up: a replacement worker did not start: {}", e.what()))));
        }
    }

    // Every pending and held task fails with `error`; later ones too.
    void give_up(std::exception_ptr error) {
        if (!broken_) broken_ = error;
        fail_all(broken_);
    }

    void fail_all(const std::exception_ptr& error) {
        pending_.clear();
        for (auto& w : workers_) {
            w.held.clear();
            w.held_tasks = 0;
        }
        std::vector<std::uint64_t> ids;
        ids.reserve(chunks_.size());
        for (const auto& [id, c] : chunks_) ids.push_back(id);
        std::sort(ids.begin(), ids.end());
        for (const auto id : ids) fail_chunk(id, error);
        for (auto& [seq, f] : feeds_) fail_tasks(*f.job, f.next, f.tasks.size(), error);
        feeds_.clear();
    }

    void fail_chunk(std::uint64_t id, const std::exception_ptr& error) {
        auto node = chunks_.extract(id);
        if (node.empty()) return;
        const Recycle recycle{*this, node};
        Chunk& c = node.mapped();
        fail_tasks(*c.job, c.first, c.first + c.request.tasks.size(), error);
    }

    // The shutdown policy for every worker at once: close request,
    // close_grace, SIGTERM, term_grace, SIGKILL; then each is reaped.
    void close_workers() noexcept {
        if (hub_) hub_->stop();  // every remote worker is told to close
        for (auto& w : workers_) w.remote_gone = w.remote_gone || w.remote != 0;
        remove_gone_remotes();
        if (!server_) return;
        for (auto& w : workers_) {
            if (!w.messenger) continue;
            try {
                (void)w.messenger->try_send_close_request(options_.worker.close_grace);
            } catch (...) {
                // dead or not reading: the signals below take over
            }
        }
        wait_for_exits(deadline_after(options_.worker.close_grace));
        signal_remaining(SIGTERM);
        wait_for_exits(deadline_after(options_.worker.term_grace));
        for (auto& w : workers_) {
            if (!w.messenger) continue;  // never started, or lost() reaped it
            try {
                (void)server_->reap(w.pid, std::chrono::milliseconds(0));  // SIGKILL if still running
            } catch (...) {
                // the server is gone: its death took the workers with it
            }
            w.messenger.reset();
            w.registration.reset();
            w.side_registration.reset();
        }
    }

    // Drains the workers until each closed its end or the deadline.
    void wait_for_exits(Deadline deadline) noexcept {
        try {
            for (;;) {
                fds_.clear();
                for (auto& w : workers_)
                    fds_.push_back(w.messenger && !w.messenger->link().peer_gone() ? w.messenger->fd() : -1);
                if (std::all_of(fds_.begin(), fds_.end(), [](int fd) { return fd < 0; })) return;
                ready_.assign(fds_.size(), 0);
                if (wait_any_readable(fds_, ready_, deadline) == 0) return;
                for (std::size_t i = 0; i < workers_.size(); ++i)
                    if (ready_[i] != 0) workers_[i].messenger->link().buffer_incoming();
            }
        } catch (...) {
            // the signals take over
        }
    }

    void signal_remaining(int sig) noexcept {
        for (auto& w : workers_) {
            if (!w.messenger || w.messenger->link().peer_gone()) continue;
            try {
                server_->signal(w.pid, sig);
            } catch (...) {
                // the server is gone
            }
        }
    }

    [[nodiscard]] static bool alive(const Worker& w) noexcept {
        return w.messenger != nullptr || (w.remote != 0 && !w.remote_gone);
    }
    [[nodiscard]] static bool dispatchable(const Worker& w) noexcept {
        return w.messenger != nullptr || (w.remote != 0 && !w.remote_gone && w.remote_ready);
    }

    // What the hub saw: workers joining, their messages, their losses.
    void take_hub_events() {
        events_.clear();
        hub_->take_events(events_);
        for (auto& e : events_) {
            if (e.kind == RemoteHub::Event::Kind::joined) {
                Worker& w = workers_.emplace_back();
                w.remote = e.worker;
                w.label = std::string(e.payload);
                w.last_progress = Clock::now();
                continue;
            }
            Worker* w = remote_worker(e.worker);
            if (w == nullptr) continue;  // dropped by us meanwhile
            if (e.kind == RemoteHub::Event::Kind::lost) {
                lost(*w);
                continue;
            }
            try {
                Message& m = answer_;
                decode_reusing(m, e.payload);
                if (m.kind == PoolMessageKind::ready) {
                    if (w->remote_ready) throw ProtocolError("coproc::Pool: a remote worker said ready twice");
                    w->remote_ready = true;
                } else {
                    take_answer(*w, m);
                }
            } catch (const ProtocolError&) {
                // Garbage from an admitted worker: give it up (it may rejoin).
                hub_->drop(w->remote);
                lost(*w);
            }
        }
        remove_gone_remotes();
    }

    [[nodiscard]] Worker* remote_worker(std::uint64_t id) noexcept {
        for (auto& w : workers_)
            if (w.remote == id && !w.remote_gone) return &w;
        return nullptr;
    }

    // A remote worker is gone: what it held runs again elsewhere (each
    // chunk split and quarantined, as after a local death; max_retries
    // applies). Nothing is restarted: it, or another, may join.
    void lost_remote(Worker& w) {
        if (w.remote_gone) return;
        w.remote_gone = true;
        const std::string who = w.label;
        for (const std::uint64_t id : w.held)
            retry(id, std::make_exception_ptr(RemoteWorkerLost(
                          fmt::format("coproc::Pool: remote worker {} was lost holding this task", who))));
        w.held.clear();
        w.held_tasks = 0;
    }

    void remove_gone_remotes() {
        std::erase_if(workers_, [](const Worker& w) { return w.remote != 0 && w.remote_gone; });
    }

    std::function<Result(const Task&)> fn_;
    std::optional<Executable> program_;
    PoolOptions options_;
    WorkerContext context_{};
    std::unique_ptr<OutputCapture> output_;  // the workers' files: outlives server_
    std::unique_ptr<PoolLauncher> server_;   // the fork server, or the spawner
    std::vector<Worker> workers_;
    std::unordered_map<std::uint64_t, Chunk> chunks_;  // pending and held
    // (priority, seq, chunk id or feed_entry): lowest first, then oldest.
    std::set<std::tuple<double, std::uint64_t, std::uint64_t>> pending_;
    std::vector<ChunkNode> spare_chunks_;
    std::vector<typename decltype(pending_)::node_type> spare_pending_;
    std::unordered_map<std::uint64_t, Feed> feeds_;  // by seq
    std::uint64_t last_chunk_ = 0;
    std::deque<Clock::time_point> restarts_;
    std::deque<ExitStatus> last_statuses_;
    std::exception_ptr broken_;
    bool closed_ = false;
    PoolStats stats_;
    std::vector<int> fds_;
    std::vector<char> ready_;
    std::vector<std::vector<std::reference_wrapper<const Message>>> outbox_;
    std::shared_ptr<RemoteHub> hub_;  // remote workers, if any
    std::vector<RemoteHub::Event> events_;
    PackedMessages packed_;  // dispatch()'s, for a remote worker
    Message answer_;         // take_hub_events()'s, decoded into
};

}  // namespace coproc::detail
