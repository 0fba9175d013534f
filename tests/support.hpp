// Helpers shared by the tests: fd snapshots, a watchdog for forked children,
// and process checks.
#pragma once

#include <chrono>
#include <cstddef>
#include <set>
#include <string>

namespace coproc::test {

/// The fds open in this process (from /proc/self/fd, without the one used to list it).
std::set<int> open_fds();

/// Arms a watchdog in a forked child: SIGALRM (default: kill) after `seconds`,
/// so no test child can outlive its test.
void child_watchdog(unsigned seconds = 30);

/// True if `pid` names no process (kill(pid, 0) gives ESRCH).
bool process_gone(long pid);

/// True if waitpid(pid) says it is not our child (ECHILD): nothing left to reap.
bool not_our_child(long pid);

/// Waits (bounded) until process_gone(pid); false if it is still there at the deadline.
bool wait_gone(long pid, std::chrono::milliseconds limit);

/// `size` bytes that depend on their index and on `seed`, so a swapped,
/// truncated or overwritten payload cannot compare equal.
std::string pattern(std::size_t size, unsigned seed);

/// This process's limits as "nofile=N cpu=N as=N nice=N cpus=a,b" (soft
/// rlimits; "inf" for none), what a worker reports to check WorkerLimits.
std::string limits_report();

/// CPU time (user + system) process `pid` has used, in clock ticks
/// (/proc/PID/stat); -1 if it cannot be read.
long cpu_ticks(long pid);

}  // namespace coproc::test
