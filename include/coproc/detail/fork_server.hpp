// coproc/detail/fork_server.hpp — a single-threaded process that forks
// workers on request: the answer to forking a replacement worker from a host
// that has threads by then. The host forks the server once (as it would fork
// a worker); from then on every worker is forked by the server, which never
// runs more than one thread, and the worker's end of its channel reaches the
// host as a passed descriptor. The host talks to the server over a
// SOCK_SEQPACKET pair; the server owns (reaps) the workers. Compiled in
// lib/fork_server.cpp. Internal.
#pragma once

#include <memory>

#include "coproc/detail/child_process.hpp"
#include "coproc/detail/deadline.hpp"
#include "coproc/detail/fork_registry.hpp"
#include "coproc/detail/unique_fd.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

class ForkServer {
public:
    /// Forks the server (from this thread: call it while the host has no
    /// other threads, as for any fork). Each worker it forks later gets
    /// default signals, the server's fds closed, SIGKILL as its parent-death
    /// signal (the server's death ends it), and runs body(context, fd) with
    /// fd its end of a new stream socketpair. `context` must stay valid in
    /// the server: it is read there, in the server's copy of this memory.
    /// Throws SpawnError.
    ForkServer(ChildBody body, void* context, int parent_death_signal);
    ForkServer(const ForkServer&) = delete;
    ForkServer& operator=(const ForkServer&) = delete;
    /// Stops the server: it SIGKILLs and reaps the workers still running,
    /// then exits; the server is reaped. Never throws.
    ~ForkServer();

    struct Started {
        long pid = 0;
        UniqueFd channel;  // the host's end of the worker's stream socket
    };
    /// Forks a worker. Blocks until the server answers or the deadline.
    /// Throws SpawnError (fork failed, server gone, no answer in time).
    [[nodiscard]] Started start_worker(Deadline deadline);
    /// Sends `sig` to worker `pid` (no-op once it was reaped). Throws
    /// SpawnError if the server is gone.
    void signal(long pid, int sig);
    /// Reaps worker `pid`: waits up to `grace` for it to exit, then
    /// SIGKILLs it; returns its exit status. Blocks about `grace` at most.
    /// Throws SpawnError if the server is gone.
    [[nodiscard]] ExitStatus reap(long pid, Clock::duration grace);
    /// The server's pid.
    [[nodiscard]] long pid() const noexcept { return server_->pid(); }
    /// Never blocks: false once the server has exited.
    [[nodiscard]] bool alive() { return !server_->poll(); }

private:
    struct Reply;
    Reply call(const void* request, std::size_t size, Deadline deadline, UniqueFd* fd);
    FdRegistration control_registration_;
    UniqueFd control_;
    std::unique_ptr<ChildProcess> server_;
};

}  // namespace coproc::detail
