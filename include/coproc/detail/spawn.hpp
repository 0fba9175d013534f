// coproc/detail/spawn.hpp — spawn mode's two ends: the host starts a program
// through posix_spawn with its end of a link at fds 3 and 4; the program
// takes them back (through coproc::worker_main). Compiled in lib/spawn.cpp.
// Internal.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "coproc/detail/child_process.hpp"
#include "coproc/detail/fork_registry.hpp"
#include "coproc/detail/unique_fd.hpp"
#include "coproc/messenger_options.hpp"
#include "coproc/worker_limits.hpp"

namespace coproc::detail {

/// What a spawned worker learns from its host besides its fds: the
/// parent-death signal (0: none) and the host's messenger options, which
/// worker_main uses unless given its own (as a forked worker shares them).
struct SpawnSettings {
    int parent_death_signal = 0;
    MessengerOptions messenger{};
    WorkerLimits limits{};  // applied by spawned_channel(), before the target runs
    // The child's fds 1 and 2 (-1: ours); not passed in the environment.
    int stdout_fd = -1;
    int stderr_fd = -1;
    // The child makes its C stdout line-buffered (a lines sink reads it):
    // passed as COPROC_WORKER_STDOUT=line, applied by spawned_channel().
    bool line_buffer_stdout = false;
};

/// Starts the executable `path` (searched in PATH when it has no '/') with
/// `args` after argv[0], through posix_spawn (a vfork: nothing of this
/// process runs in the child, so any thread may call it). The child gets
/// channel_fd as fd 3 and side_fd as fd 4 (and, where pidfds are missing,
/// its exit pipe as fd 5), and settings.stdout_fd / stderr_fd (when not -1)
/// as fds 1 and 2; every other fd but 0, 1, 2 is closed, all
/// signals get their default disposition and the mask is emptied; it runs in
/// `working_directory` (empty: ours); its environment is ours with `env`'s
/// "NAME=value" entries added or replacing, plus COPROC_WORKER, which
/// carries `settings`. Throws SpawnError if the program cannot be started
/// (the message names it and the reason), std::invalid_argument for an `env`
/// entry without '=' or one naming COPROC_WORKER.
[[nodiscard]] std::unique_ptr<ChildProcess> spawn_process(const std::string& path, const std::vector<std::string>& args,
                                                          const std::vector<std::string>& env,
                                                          const std::string& working_directory, int channel_fd,
                                                          int side_fd, const SpawnSettings& settings);

/// In a program spawned by spawn_process: what its host passed.
struct SpawnedChannel {
    UniqueFd stream;  // fd 3, now close-on-exec
    UniqueFd side;    // fd 4, likewise
    // Registered as this process's, so the workers it forks close them.
    FdRegistration stream_registration;
    FdRegistration side_registration;
    FdRegistration exit_registration;
    UniqueFd exit_pipe;  // fd 5 when the host has no pidfd: held until we end
    SpawnSettings settings;
};
/// Takes the channel from COPROC_WORKER and fds 3 and 4 (once: the variable
/// is removed, so programs this one starts do not see it), and sets the
/// parent-death signal. Throws SpawnError if this program was not started by
/// a WorkerResource in spawn mode (no or bad COPROC_WORKER, fds 3 or 4 not
/// sockets), ChannelClosed if the host has already exited. Not thread-safe
/// (it edits the environment): call it first thing in main().
[[nodiscard]] SpawnedChannel spawned_channel();

/// spawned_channel() for the entry points (worker_main, pool_worker_main):
/// the channel, or, without one, the exit code main() should return: 1 if
/// the host has already exited, 2 after one line on stderr if no host
/// started this program (run by hand, say) or its set-up is broken. Never
/// throws SpawnError or ChannelClosed.
[[nodiscard]] bool take_spawned_channel(SpawnedChannel& channel, int& exit_code);

}  // namespace coproc::detail
