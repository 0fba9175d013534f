// coproc/detail/child_process.hpp — a child process we own: fork with
// hygiene, a pidfd (or an exit pipe) for race-free waiting and signalling,
// and its exit status. It knows nothing of messenger links: the worker layer
// (worker_watch.hpp) joins the two. Compiled in lib/child_process.cpp; spawn
// mode's start is in spawn.hpp. Internal.
#pragma once

#include <memory>
#include <optional>

#include "coproc/detail/deadline.hpp"
#include "coproc/detail/fork_registry.hpp"
#include "coproc/detail/unique_fd.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

/// The child's entry point; must end the process (it is called after fork and
/// never returns into the caller's stack).
using ChildBody = void (*)(void* context, int channel_fd) noexcept;

class ChildProcess {
public:
    /// Forks. The child resets signal dispositions and mask, closes every
    /// registered fd but channel_fd and side_fd (-1: none), registers those
    /// two as its own (its workers close them), sets the parent-death signal
    /// (0: none) and checks that the parent is still there, then runs
    /// body(context, channel_fd). Throws SpawnError if fork or pidfd_open
    /// fails. Call with no other threads running (see README, Gotchas).
    static std::unique_ptr<ChildProcess> fork(int channel_fd, int side_fd, int parent_death_signal, ChildBody body,
                                              void* context);

    /// Takes charge of a child just started by other means (spawn_process):
    /// watched through `exit_read` (the read end of its exit_pipe()) if
    /// valid, else through a new pidfd. Throws SpawnError (after killing and
    /// reaping the child) if pidfd_open fails.
    static std::unique_ptr<ChildProcess> adopt(long pid, UniqueFd exit_read);
    /// Where pidfds are missing, a new child's exit pipe (read end, write
    /// end, both close-on-exec; the child keeps the write end open until it
    /// ends); two empty fds where they are not. Throws SystemError.
    static FdPair exit_pipe();

    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    /// Safety net: SIGKILLs and reaps a child still unreaped. Never throws.
    ~ChildProcess();

    [[nodiscard]] long pid() const noexcept { return pid_; }
    /// Set once the child was reaped.
    [[nodiscard]] const std::optional<ExitStatus>& status() const noexcept { return status_; }
    /// Readable once the child has exited. An exit pipe may stay silent
    /// after the exit while a grandchild holds its write end: poll() tells.
    [[nodiscard]] int exit_fd() const noexcept { return exit_fd_.get(); }

    /// Input that wait() keeps reading while it waits, so a child blocked
    /// writing to us can reach its exit.
    class Input {
    public:
        /// The fd to watch; -1 once nothing more will come.
        [[nodiscard]] virtual int fd() const noexcept = 0;
        /// Reads what is readable now without blocking. May throw (wait()
        /// passes it on).
        virtual void read_available() = 0;

    protected:
        Input() = default;
        Input(const Input&) = default;
        Input& operator=(const Input&) = default;
        ~Input() = default;
    };

    /// Never blocks: reaps the child if it has exited. True once reaped.
    bool poll();
    /// Blocks until the child exits (reaping it) or the deadline passes;
    /// nullopt on deadline. Reads `input` and `other` (either may be null)
    /// whenever they are readable meanwhile.
    std::optional<ExitStatus> wait(Deadline deadline, Input* input = nullptr, Input* other = nullptr);
    /// Sends a signal through the pidfd (no pid-reuse race). No-op once exited.
    void signal(int sig) noexcept;
    /// SIGKILL and blocking reap. Never throws.
    ExitStatus kill_and_reap() noexcept;

private:
    ChildProcess(long pid, UniqueFd exit_fd, bool is_pidfd);
    // Non-blocking reap through waitid(P_PIDFD) or waitpid.
    bool reap_now();

    long pid_;
    // Readable once the child has exited: its pidfd, or, where the kernel (or
    // valgrind) lacks pidfd_open, the read end of a pipe whose write end only
    // the child holds.
    UniqueFd exit_fd_;
    bool is_pidfd_;
    FdRegistration exit_fd_registration_;
    std::optional<ExitStatus> status_;
};

/// True when this kernel (and valgrind, if we run under it) has pidfd_open;
/// COPROC_FORCE_EXIT_PIPE=1 says false (the test suite runs both ways).
[[nodiscard]] bool pidfd_supported();

/// Flushes stdio and ends the process with `code` (never runs atexit handlers
/// or static destructors of the host program image).
[[noreturn]] void child_exit(int code) noexcept;

}  // namespace coproc::detail
