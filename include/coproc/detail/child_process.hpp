// coproc/detail/child_process.hpp — a forked child: fork with hygiene, a
// pidfd for race-free waiting and signalling, and the registry of fds every
// child must close. Compiled in lib/worker.cpp. Internal.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coproc/detail/fd.hpp"
#include "coproc/detail/link.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

/// The child's entry point; must end the process (it is called after fork and
/// never returns into the caller's stack).
using ChildBody = void (*)(void* context, int channel_fd) noexcept;

/// What a spawned worker learns from its host besides its fds: the
/// parent-death signal (0: none) and the host's messenger options, which
/// worker_main uses unless given its own (as a forked worker shares them).
struct SpawnSettings {
    int parent_death_signal = 0;
    std::size_t max_frame_size = 0;
    std::size_t shared_memory_threshold = 0;
    std::size_t shared_memory_limit = 0;
};

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

    /// Spawn mode: starts the executable `path` (searched in PATH when it
    /// has no '/') with `args` after argv[0], through posix_spawn (a vfork:
    /// nothing of this process runs in the child, so any thread may call
    /// it). The child gets channel_fd as fd 3 and side_fd as fd 4 (and, where
    /// pidfds are missing, its exit pipe as fd 5); every other fd but 0, 1, 2
    /// is closed, all signals get their default disposition and the mask is
    /// emptied; it runs in `working_directory` (empty: ours); its environment
    /// is ours with `env`'s "NAME=value" entries added or replacing, plus
    /// COPROC_WORKER (see spawned_link()), which carries `settings`. Throws
    /// SpawnError if the program cannot be started (the message names it and
    /// the reason), std::invalid_argument for an `env` entry without '='.
    static std::unique_ptr<ChildProcess> spawn(const std::string& path, const std::vector<std::string>& args,
                                               const std::vector<std::string>& env,
                                               const std::string& working_directory, int channel_fd, int side_fd,
                                               const SpawnSettings& settings);

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
    // The child just started: watched through `exit_read` (the read end of
    // its exit pipe) if valid, else through a new pidfd. Throws SpawnError
    // (after killing and reaping the child) if pidfd_open fails.
    static std::unique_ptr<ChildProcess> adopt(long pid, UniqueFd exit_read);
    // Where pidfds are missing, a new child's exit pipe (read end, write end,
    // both close-on-exec; the child keeps the write end open until it ends);
    // two empty fds where they are not. Throws SystemError.
    static SocketPair exit_pipe();
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

/// In a program spawned by ChildProcess::spawn: what its host passed.
struct SpawnedLink {
    LinkEnd end;  // fds 3 and 4, now close-on-exec
    // Registered as this process's, so the workers it forks close them.
    FdRegistration stream_registration;
    FdRegistration side_registration;
    FdRegistration exit_registration;
    UniqueFd exit_pipe;  // fd 5 when the host has no pidfd: held until we end
    SpawnSettings settings;
};
/// Takes the link from COPROC_WORKER and fds 3 and 4 (once: the variable is
/// removed, so programs this one starts do not see it), and sets the
/// parent-death signal. Throws SpawnError if this program was not started by
/// a WorkerResource in spawn mode (no or bad COPROC_WORKER, fds 3 or 4 not
/// sockets), ChannelClosed if the host has already exited. Not thread-safe
/// (it edits the environment): call it first thing in main().
[[nodiscard]] SpawnedLink spawned_link();

/// Flushes stdio and ends the process with `code` (never runs atexit handlers
/// or static destructors of the host program image).
[[noreturn]] void child_exit(int code) noexcept;

}  // namespace coproc::detail
