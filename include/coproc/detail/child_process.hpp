// coproc/detail/child_process.hpp — a forked child: fork with hygiene, a
// pidfd for race-free waiting and signalling, and the registry of fds every
// child must close. Compiled in lib/worker.cpp. Internal.
#pragma once

#include <memory>
#include <optional>
#include <utility>

#include "coproc/detail/fd.hpp"
#include "coproc/detail/link.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

/// The child's entry point; must end the process (it is called after fork and
/// never returns into the caller's stack).
using ChildBody = void (*)(void* context, int channel_fd) noexcept;

class ChildProcess final : public PeerWatch {
public:
    /// Forks. The child resets signal dispositions and mask, closes every
    /// registered fd but channel_fd and side_fd (-1: none), registers those
    /// two as its own (its workers close them), sets the parent-death signal
    /// (0: none) and checks that the parent is still there, then runs
    /// body(context, channel_fd). Throws SpawnError if fork or pidfd_open
    /// fails. Call with no other threads running (see README, Gotchas).
    static std::unique_ptr<ChildProcess> fork(int channel_fd, int side_fd, int parent_death_signal, ChildBody body,
                                              void* context);

    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    /// Safety net: SIGKILLs and reaps a child still unreaped. Never throws.
    ~ChildProcess();

    [[nodiscard]] long pid() const noexcept { return pid_; }
    /// Set once the child was reaped.
    [[nodiscard]] const std::optional<ExitStatus>& status() const noexcept { return status_; }

    /// Never blocks: reaps the child if it has exited. True once reaped.
    bool poll();
    /// Blocks until the child exits (reaping it) or the deadline passes.
    /// While waiting, bytes arriving on `link` (may be null) are buffered, so
    /// a child blocked writing to us can reach its exit. nullopt on deadline.
    std::optional<ExitStatus> wait(Deadline deadline, Link* link);
    /// Sends a signal through the pidfd (no pid-reuse race). No-op once exited.
    void signal(int sig) noexcept;
    /// SIGKILL and blocking reap. Never throws.
    ExitStatus kill_and_reap() noexcept;

    [[nodiscard]] int liveness_fd() const noexcept override { return exit_fd_.get(); }
    /// poll(): an exit pipe stays open while a grandchild the worker forked
    /// holds its write end; the reap still tells.
    [[nodiscard]] bool peer_exited() override { return poll(); }
    /// Waits up to 1 s for the exit, then throws WorkerDied (or ChannelClosed
    /// if the child closed its channel but still runs).
    [[noreturn]] void raise_peer_closed() override;

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

/// Flushes stdio and ends the process with `code` (never runs atexit handlers
/// or static destructors of the host program image).
[[noreturn]] void child_exit(int code) noexcept;

}  // namespace coproc::detail
