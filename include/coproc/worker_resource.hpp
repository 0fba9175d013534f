// coproc/worker_resource.hpp — a worker process whose life is a C++ scope.
//
//   void echo(coproc::PriorityMessenger<std::string>& m) {
//       for (;;) m.send_reply(m.receive_blocking());   // ResourceRequestedClose ends it: exit 0
//   }
//   {
//       coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(echo);
//       w.messenger().send_request("hi");
//       auto reply = w.messenger().receive_blocking(Channel{}, 1s);
//   }   // close request, grace, SIGTERM, grace, SIGKILL, reap — never throws
//
// The child runs target(messenger, args...) (a function, lambda or function
// object; args are copied before the fork). An int result is the exit code;
// void means 0. An exception escaping the target is sent to the host as an
// error frame and the child exits with 1; ResourceRequestedClose escaping it
// is a clean exit, code 0. The child never returns into the caller's stack.
//
// Fork discipline: fork from a single-threaded host (other threads' locks stay
// locked in the child). stdio is flushed before the fork. In the child:
// default signal dispositions and mask, every fd coproc holds for other
// workers closed, the parent-death signal set (WorkerOptions), _exit at the end.
//
// stdout and stderr are the host's unless WorkerOptions::std_out / std_err
// send them to /dev/null, a file or a callback per line (worker_output.hpp).
//
// Spawn mode, WorkerResource<M> w(Executable{path, args}), starts a program
// of its own whose main() calls coproc::worker_main<M> (worker_main.hpp):
// safe from any thread of a multi-threaded host; the same API otherwise.
//
// Host-side methods are for the thread that owns the WorkerResource; none is
// thread-safe. The host owns the child's pid: never waitpid() it yourself.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <chrono>
#include <concepts>
#include <csignal>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "coproc/detail/child_process.hpp"
#include "coproc/detail/fork_registry.hpp"
#include "coproc/detail/link.hpp"
#include "coproc/detail/output_capture.hpp"
#include "coproc/detail/spawn.hpp"
#include "coproc/detail/worker_watch.hpp"
#include "coproc/error.hpp"
#include "coproc/messenger.hpp"
#include "coproc/worker_limits.hpp"
#include "coproc/worker_output.hpp"

namespace coproc {

struct WorkerOptions {
    /// How long the constructor waits for the child's hello frame.
    std::chrono::milliseconds start_timeout{10'000};
    /// Destructor: wait this long after the close request before SIGTERM...
    std::chrono::milliseconds close_grace{1'000};
    /// ...and this long after SIGTERM before SIGKILL.
    std::chrono::milliseconds term_grace{1'000};
    /// Sent to the worker when the host thread that created it dies (0: none).
    /// PR_SET_PDEATHSIG fires when the creating *thread* exits.
    int parent_death_signal = SIGKILL;
    MessengerOptions messenger{};
    /// Resource limits, nice value, CPU affinity (coproc/worker_limits.hpp):
    /// applied in the worker before its target runs, fork and spawn mode.
    WorkerLimits limits{};
    /// Where the worker's stdout and stderr go (coproc/worker_output.hpp):
    /// the host's (default), discarded, a file, or a callback per line.
    OutputSink std_out{};
    OutputSink std_err{};
};

/// Spawn mode: a worker that is a program of its own, whose main() calls
/// coproc::worker_main (coproc/worker_main.hpp) with the same messenger type.
struct Executable {
    /// The program: a path, or a bare name searched in PATH.
    std::string path;
    /// Its arguments after argv[0] (which is `path`).
    std::vector<std::string> args;
    /// "NAME=value" entries added to (or replacing in) the host's environment.
    std::vector<std::string> env{};
    /// Its working directory; empty: the host's.
    std::string working_directory{};
};

namespace detail {

/// target and copies of args bound into one callable: call(messenger) runs
/// target(messenger, args...) and returns its int result, or 0 for void.
template <class Messenger, class F, class... Args>
auto bind_target(F&& target, Args&&... args) {
    return [fn = std::decay_t<F>(std::forward<F>(target)),
            bound = std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)](Messenger& m) mutable {
        return std::apply(
            [&](auto&... a) -> int {
                if constexpr (std::is_convertible_v<std::invoke_result_t<decltype(fn)&, Messenger&, decltype(a)...>,
                                                    int>)
                    return static_cast<int>(std::invoke(fn, m, a...));
                else {
                    std::invoke(fn, m, a...);
                    return 0;
                }
            },
            bound);
    };
}

/// The worker's side of a target's life, forked or spawned: runs call(m)
/// and returns the exit code. An escaping exception is sent to the host as
/// an error frame (code 1); ResourceRequestedClose is a clean end (0);
/// ChannelClosed means the host is gone (1, nobody to tell). Never throws.
template <class Messenger, class Call>
int run_target(Messenger& m, Call& call) noexcept {
    try {
        return call(m);
    } catch (const ResourceRequestedClose&) {
        return 0;
    } catch (const ChannelClosed&) {
        return 1;
    } catch (...) {
        try {
            m.send_error(std::current_exception());
        } catch (...) {
            // the host is gone or the channel broken: the exit code still tells
        }
        return 1;
    }
}

/// The worker's whole side, forked or spawned: builds its messenger on
/// `end` and runs call(m) through run_target; 1 if the messenger cannot be
/// built (the host then sees the exit). Never throws.
template <class Messenger, class Call>
int serve_as_worker(LinkEnd end, const MessengerOptions& options, Call& call) noexcept {
    try {
        Messenger m(std::move(end), options);
        return run_target(m, call);
    } catch (...) {
        return 1;
    }
}

}  // namespace detail

template <class Messenger>
class WorkerResource {
public:
    using messenger_type = Messenger;
    using Duration = std::chrono::nanoseconds;

    /// Starts the worker and waits for its startup handshake. Throws
    /// SpawnError if it cannot be started or does not answer in time.
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, Messenger&, std::decay_t<Args>&...>
    explicit WorkerResource(F&& target, Args&&... args)
        : WorkerResource(WorkerOptions{}, std::forward<F>(target), std::forward<Args>(args)...) {}

    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, Messenger&, std::decay_t<Args>&...>
    WorkerResource(const WorkerOptions& worker_options, F&& target, Args&&... args) : options_(worker_options) {
        auto call = detail::bind_target<Messenger>(std::forward<F>(target), std::forward<Args>(args)...);
        using Call = decltype(call);
        detail::check_limits(options_.limits);
        start({}, true, [&](const detail::LinkEnd& child_end, const detail::OutputCapture* output) {
            ChildContext<Call> ctx{&call,
                                   options_.messenger,
                                   child_end.side.get(),
                                   child_end.arrivals,
                                   &options_.limits,
                                   output != nullptr ? output->child_fd(0) : -1,
                                   output != nullptr ? output->child_fd(1) : -1,
                                   output != nullptr && output->stdout_is_lines()};
            return detail::ChildProcess::fork(child_end.stream.get(), child_end.side.get(),
                                              options_.parent_death_signal, &child_main<Call>, &ctx);
        });
    }

    /// Spawn mode: starts `program` as the worker and waits for its startup
    /// handshake. Unlike a forked worker it shares nothing with this process
    /// but fds 0, 1, 2 and its channel, so any thread may start one, whatever
    /// the others do (see README, "Spawn mode"). It is watched, joined,
    /// signalled and destroyed exactly like a forked one. Throws SpawnError
    /// if the program cannot be started (not found, not executable), or
    /// does not answer within start_timeout (it is killed and reaped then).
    explicit WorkerResource(const Executable& program) : WorkerResource(WorkerOptions{}, program) {}
    WorkerResource(const WorkerOptions& worker_options, const Executable& program) : options_(worker_options) {
        detail::check_limits(options_.limits);
        start(program.path, false, [&](const detail::LinkEnd& child_end, const detail::OutputCapture* output) {
            return detail::spawn_process(
                program.path, program.args, program.env, program.working_directory, child_end.stream.get(),
                child_end.side.get(),
                {options_.parent_death_signal, options_.messenger, options_.limits,
                 output != nullptr ? output->child_fd(0) : -1, output != nullptr ? output->child_fd(1) : -1,
                 output != nullptr && output->stdout_is_lines()});
        });
    }

    WorkerResource(WorkerResource&&) noexcept = default;
    WorkerResource& operator=(WorkerResource&& other) noexcept {
        if (this != &other) {
            shutdown();
            options_ = other.options_;
            watch_ = std::move(other.watch_);
            registration_ = std::move(other.registration_);
            side_registration_ = std::move(other.side_registration_);
            messenger_ = std::move(other.messenger_);
        }
        return *this;
    }
    WorkerResource(const WorkerResource&) = delete;
    WorkerResource& operator=(const WorkerResource&) = delete;

    /// Close request, close_grace, SIGTERM, term_grace, SIGKILL, reap. Never throws.
    ~WorkerResource() { shutdown(); }

    /// The host-side messenger. What the worker sent stays receivable after it exited.
    [[nodiscard]] Messenger& messenger() noexcept { return *messenger_; }
    [[nodiscard]] const Messenger& messenger() const noexcept { return *messenger_; }

    /// Sends a close request and blocks until the worker exits; returns its
    /// status. Incoming frames are buffered meanwhile (receivable afterwards).
    ExitStatus join() { return *join_until(std::nullopt); }
    /// Same, but throws Timeout if the worker is still running after `timeout`
    /// (it keeps running; the destructor still ends it).
    ExitStatus join(Duration timeout) {
        if (auto s = join_until(detail::deadline_after(timeout))) return *s;
        throw Timeout(fmt::format("coproc: worker {} did not exit within the join timeout", pid()));
    }
    /// SIGTERM, then SIGKILL after `grace` (default: term_grace); reaps. Blocks at most about `grace`.
    ExitStatus terminate() { return terminate(options_.term_grace); }
    ExitStatus terminate(Duration grace) {
        child().signal(SIGTERM);
        if (auto s = watch_->wait(messenger_->link(), detail::deadline_after(grace))) return *s;
        return reaped(child().kill_and_reap());
    }
    /// SIGKILL and reap. Blocks until the kernel has ended the child.
    ExitStatus kill() { return reaped(child().kill_and_reap()); }

    /// Never blocks. False once the worker has exited (it is reaped then).
    [[nodiscard]] bool is_alive() {
        if (!child().poll()) return true;
        (void)watch_->finish_output();
        return false;
    }
    [[nodiscard]] long pid() const noexcept { return watch_->child().pid(); }
    /// For an event loop (epoll, Boost.Asio): an fd that becomes readable
    /// once the worker has exited (its pidfd, or an exit pipe's read end on
    /// kernels without pidfd_open). Wait for readability only: never read,
    /// close or keep it past this object; then call join(timeout).
    /// The messenger's own fd (messenger().fd()) is the other half; see the
    /// README, "Event loops".
    [[nodiscard]] int exit_fd() const noexcept { return watch_->child().exit_fd(); }
    /// Never blocks. The exit status once the worker has exited.
    [[nodiscard]] std::optional<ExitStatus> exit_status() {
        if (child().poll()) (void)watch_->finish_output();
        return child().status();
    }

    /// Never blocks: calls the lines sinks' callbacks for every complete
    /// line the worker has written so far; returns how many (0 without a
    /// lines sink). The waits of this worker and its messenger do the same.
    std::size_t pump_output() noexcept { return watch_->pump_output(); }
    /// For an event loop: readable when a lines sink has something to read
    /// (then call pump_output()); -1 without a lines sink, and once the
    /// worker's output is all delivered. Never read, close or keep it.
    [[nodiscard]] int output_fd() const noexcept { return watch_->service_fd(); }

private:
    template <class Call>
    struct ChildContext {
        Call* call;
        MessengerOptions options;
        int side_fd;  // the child's end of the link's descriptor channel
        detail::ArrivalFlags arrivals;
        const WorkerLimits* limits;
        int stdout_fd;  // the worker's fds 1 and 2 (-1: the host's)
        int stderr_fd;
        bool line_buffer_stdout;
    };

    // The child's whole life: build its messenger, run the target, report an
    // escaping exception, _exit. Never returns, never throws.
    template <class Call>
    [[noreturn]] static void child_main(void* context, int fd) noexcept {
        auto& ctx = *static_cast<ChildContext<Call>*>(context);
        detail::redirect_output_or_exit(ctx.stdout_fd, ctx.stderr_fd, ctx.line_buffer_stdout);
        detail::apply_limits_or_exit(*ctx.limits);
        // Workers this worker starts must not inherit its channel (they
        // would keep the host from seeing EOF when this worker dies):
        // ChildProcess::fork registered both its fds as this process's.
        detail::child_exit(detail::serve_as_worker<Messenger>(
            detail::LinkEnd{detail::UniqueFd(fd), detail::UniqueFd(ctx.side_fd), ctx.arrivals}, ctx.options,
            *ctx.call));
    }

    [[nodiscard]] detail::ChildProcess& child() noexcept { return watch_->child(); }

    // The one start sequence, forked or spawned: the output sinks and a new
    // link; launch(child's end, sinks or null) starts the child, which alone
    // keeps that end; then our messenger on the host's end waits for the
    // child's hello. `program`: a spawned executable's path, for the error
    // message. `forked`: the child shares our memory map, so the ends share
    // arrival flags (a spawned one cannot).
    template <class Launch>
    void start(std::string_view program, bool forked, Launch&& launch) {
        auto output = std::make_unique<detail::OutputCapture>(options_.std_out, options_.std_err);
        if (output->inherits_all()) output.reset();
        auto ends = detail::make_link_pair();
        if (forked) detail::share_arrival_flags(ends);
        register_host_end(ends.first);
        auto child = launch(ends.second, output.get());
        if (output) output->child_started();
        watch_ = std::make_unique<detail::WorkerWatch>(std::move(child), std::move(output));
        ends.second = {};  // the child's end lives only in the child
        await_start(std::move(ends.first), program);
    }

    ExitStatus reaped(ExitStatus status) noexcept {
        (void)watch_->finish_output();
        return status;
    }

    // Workers forked later close the host's ends of this one's link.
    void register_host_end(const detail::LinkEnd& end) {
        registration_ = detail::FdRegistration(end.stream.get());
        side_registration_ = detail::FdRegistration(end.side.get());
    }

    // The child runs: builds our messenger and waits for its hello.
    void await_start(detail::LinkEnd host_end, std::string_view program) {
        std::string why;
        bool timed_out = false;
        try {
            messenger_.emplace(std::move(host_end), options_.messenger);
            messenger_->link().set_watch(watch_.get());
            if (messenger_->link().await_hello(detail::deadline_after(options_.start_timeout))) return;
            // Still running without a word: too slow, or it never calls worker_main.
            timed_out = !child().poll();
        } catch (const ChannelClosed&) {
            // fall through: the child died during start-up
        } catch (const ProtocolError& e) {
            why = e.what();  // a spawned program with another message type or protocol version
        }
        const ExitStatus status = reaped(child().kill_and_reap());
        const std::string name = program.empty() ? std::string() : fmt::format(" ('{}')", program);
        if (timed_out)
            throw SpawnError(fmt::format(
                "coproc: worker {}{} did not start: no answer within start_timeout ({} ms), so it was killed", pid(),
                name, options_.start_timeout.count()));
        if (!why.empty())
            throw SpawnError(
                fmt::format("coproc: worker {}{} did not start: {} (then it {})", pid(), name, why, status.describe()));
        throw SpawnError(fmt::format("coproc: worker {}{} did not start ({})", pid(), name, status.describe()));
    }

    std::optional<ExitStatus> join_until(detail::Deadline deadline) {
        if (child().poll()) return child().status();
        try {
            // false: the worker closed its end and is exiting (it returned):
            // the common case, so no exception for it.
            (void)messenger_->try_send_close_request(std::chrono::duration_cast<Duration>(options_.close_grace));
        } catch (const ChannelClosed&) {
            // already exiting: wait for it below
        } catch (const Timeout&) {
            // the worker does not read: keep waiting for it until the deadline
        }
        return watch_->wait(messenger_->link(), deadline);
    }

    void shutdown() noexcept {
        if (!watch_) return;
        detail::ChildProcess& c = child();
        try {
            if (!c.poll()) {
                auto& link = messenger_->link();
                try {
                    (void)messenger_->try_send_close_request(
                        std::chrono::duration_cast<Duration>(options_.close_grace));
                } catch (...) {
                    // dead or not reading: the signals below take over
                }
                if (!watch_->wait(link, detail::deadline_after(options_.close_grace))) {
                    c.signal(SIGTERM);
                    if (!watch_->wait(link, detail::deadline_after(options_.term_grace))) c.kill_and_reap();
                }
            }
        } catch (...) {
            (void)c.kill_and_reap();
        }
        (void)watch_->finish_output();
        registration_.reset();
        side_registration_.reset();
        // The messenger's link points at the watch: it goes first.
        messenger_.reset();
        watch_.reset();
    }

    WorkerOptions options_;
    // The child and its watch; heap-allocated so the messenger's link can
    // point at it across moves (shutdown() destroys the messenger first).
    std::unique_ptr<detail::WorkerWatch> watch_;
    // The host's stream and side ends: workers forked later close them.
    detail::FdRegistration registration_;
    detail::FdRegistration side_registration_;
    std::optional<Messenger> messenger_;
};

}  // namespace coproc

/// Executable(path='./square_worker', args=['--fast'])
template <>
struct fmt::formatter<coproc::Executable> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::Executable& e, Ctx& ctx) const {
        auto out = fmt::format_to(ctx.out(), "Executable(path='{}', args=[", e.path);
        for (std::size_t i = 0; i < e.args.size(); ++i)
            out = fmt::format_to(out, "{}'{}'", i == 0 ? "" : ", ", e.args[i]);
        out = fmt::format_to(out, "]");
        if (!e.env.empty()) {
            out = fmt::format_to(out, ", env=[");
            for (std::size_t i = 0; i < e.env.size(); ++i)
                out = fmt::format_to(out, "{}'{}'", i == 0 ? "" : ", ", e.env[i]);
            out = fmt::format_to(out, "]");
        }
        if (!e.working_directory.empty()) out = fmt::format_to(out, ", working_directory='{}'", e.working_directory);
        return fmt::format_to(out, ")");
    }
};

/// WorkerResource(pid=1234, messenger=PriorityMessenger(fd=5, ...))
template <class Messenger>
struct fmt::formatter<coproc::WorkerResource<Messenger>> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::WorkerResource<Messenger>& w, Ctx& ctx) const {
        return fmt::format_to(ctx.out(), "WorkerResource(pid={}, messenger={})", w.pid(), w.messenger());
    }
};
