// The fork server (see fork_server.hpp): its request loop, which runs in the
// server process, and the host's calls to it.
#include "coproc/detail/fork_server.hpp"

#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "coproc/detail/fork_registry.hpp"
#include "socket.hpp"

namespace coproc::detail {
namespace {

// One request per datagram, one reply per request (the started worker's fd
// rides on the reply).
enum class Op : std::uint32_t { start = 1, signal = 2, reap = 3 };
struct Request {
    Op op;
    std::int32_t sig;       // signal: the signal
    std::int64_t pid;       // signal, reap: the worker
    std::int64_t grace_ns;  // reap: how long to wait before SIGKILL
};
struct WireReply {
    std::int64_t pid;     // start: the new worker (0: fork failed); reap: the worker
    std::int32_t error;   // start: errno of a failed fork or socketpair
    std::int32_t exited;  // reap: 1 exited, 0 killed by a signal
    std::int32_t value;   // reap: exit code or signal
    std::int32_t known;   // reap, signal: 1 if the pid was the server's worker
};

struct ServerContext {
    int control;
    ChildBody body;
    void* context;
    int death_signal;
};

void send_reply(int control, const WireReply& reply, int attach_fd) {
    const iovec one{const_cast<WireReply*>(&reply), sizeof reply};
    std::size_t sent = 0;
    (void)send_some(control, std::span<const iovec>(&one, 1), sent, attach_fd);
}

// The server's whole life: one request at a time until the host closes the
// control socket (or dies), then every worker still running is killed and
// reaped. Single-threaded by construction: it forks safely.
[[noreturn]] void serve(void* raw, int control) noexcept {
    const auto& ctx = *static_cast<ServerContext*>(raw);
    std::map<long, std::unique_ptr<ChildProcess>> workers;
    {
        // (ChildProcess::fork registered `control` as this process's own, so
        // the workers forked here close it.)
        for (;;) {
            Request request{};
            long n = -1;
            try {
                n = recv_blocking(control, &request, sizeof request);
            } catch (...) {
                break;
            }
            if (n == 0) break;  // the host closed its end (or died)
            if (n != static_cast<long>(sizeof request)) continue;
            WireReply reply{};
            try {
                switch (request.op) {
                    case Op::start: {
                        FdPair pair = make_socketpair();
                        // The host's end: this worker closes it (it would
                        // hold its own channel open otherwise).
                        const FdRegistration host_end(pair.first.get());
                        auto child = ChildProcess::fork(pair.second.get(), -1, ctx.death_signal, ctx.body, ctx.context);
                        reply.pid = child->pid();
                        workers.emplace(child->pid(), std::move(child));
                        pair.second.reset();
                        send_reply(control, reply, pair.first.get());
                        continue;
                    }
                    case Op::signal: {
                        if (auto it = workers.find(static_cast<long>(request.pid)); it != workers.end()) {
                            it->second->signal(request.sig);
                            reply.known = 1;
                        }
                        break;
                    }
                    case Op::reap: {
                        reply.pid = request.pid;
                        if (auto it = workers.find(static_cast<long>(request.pid)); it != workers.end()) {
                            auto status = it->second->wait(deadline_after(std::chrono::nanoseconds(request.grace_ns)));
                            const ExitStatus s = status ? *status : it->second->kill_and_reap();
                            reply.known = 1;
                            reply.exited = s.exited() ? 1 : 0;
                            reply.value = s.exited() ? s.code() : s.signal();
                            workers.erase(it);
                        }
                        break;
                    }
                }
            } catch (const SystemError& e) {
                reply.error = e.code().value();
            } catch (...) {
                reply.error = EIO;
            }
            send_reply(control, reply, -1);
        }
    }
    for (auto& [pid, child] : workers) (void)child->kill_and_reap();
    workers.clear();
    child_exit(0);
}

}  // namespace

struct ForkServer::Reply {
    WireReply wire;
};

ForkServer::ForkServer(ChildBody body, void* context, int parent_death_signal) {
    FdPair pair = make_socketpair(SOCK_SEQPACKET);
    // Our end is registered before the fork: the server (and every child
    // this process forks later) closes it, so the server sees EOF when we
    // close it or die.
    control_registration_ = FdRegistration(pair.first.get());
    // Read in the server's copy of this frame: valid there until it exits.
    ServerContext ctx{pair.second.get(), body, context, parent_death_signal};
    server_ = ChildProcess::fork(pair.second.get(), -1, parent_death_signal, &serve, &ctx);
    control_ = std::move(pair.first);
}

ForkServer::~ForkServer() {
    control_registration_.reset();
    control_.reset();  // the server sees EOF: it kills and reaps its workers, then exits
    try {
        if (!server_->wait(deadline_after(std::chrono::seconds(5)))) (void)server_->kill_and_reap();
    } catch (...) {
        (void)server_->kill_and_reap();
    }
}

ForkServer::Reply ForkServer::call(const void* request, std::size_t size, Deadline deadline, UniqueFd* fd) {
    const iovec one{const_cast<void*>(request), size};
    std::size_t sent = 0;
    for (;;) {
        const SendResult r = send_some(control_.get(), std::span<const iovec>(&one, 1), sent, -1);
        if (r == SendResult::ok) break;
        if (r == SendResult::peer_closed) throw SpawnError("coproc: the pool's fork server is gone");
        if (wait_io(control_.get(), false, deadline) == io_none)
            throw SpawnError("coproc: the pool's fork server did not take a request in time");
    }
    Reply reply{};
    FdInbox inbox;
    for (;;) {
        const long n = recv_some(control_.get(), &reply.wire, sizeof reply.wire, &inbox);
        if (n == static_cast<long>(sizeof reply.wire)) break;
        if (n == 0) throw SpawnError("coproc: the pool's fork server is gone");
        if (n > 0) throw ProtocolError("coproc: malformed reply from the pool's fork server");
        if (wait_readable(control_.get(), -1, deadline) == ready_none)
            throw SpawnError("coproc: the pool's fork server did not answer in time");
    }
    if (fd != nullptr && !inbox.empty()) *fd = std::move(inbox.front());
    return reply;
}

ForkServer::Started ForkServer::start_worker(Deadline deadline) {
    const Request request{Op::start, 0, 0, 0};
    Started started;
    const Reply reply = call(&request, sizeof request, deadline, &started.channel);
    if (reply.wire.pid <= 0 || !started.channel)
        throw SpawnError(fmt::format("coproc: the pool's fork server could not start a worker: {}",
                                     std::strerror(reply.wire.error != 0 ? reply.wire.error : EIO)));
    started.pid = static_cast<long>(reply.wire.pid);
    return started;
}

void ForkServer::signal(long pid, int sig) {
    const Request request{Op::signal, sig, pid, 0};
    (void)call(&request, sizeof request, deadline_after(std::chrono::seconds(5)), nullptr);
}

ExitStatus ForkServer::reap(long pid, Clock::duration grace) {
    const Request request{Op::reap, 0, pid, std::chrono::duration_cast<std::chrono::nanoseconds>(grace).count()};
    // The server waits `grace`, then kills and reaps: allow for both.
    const Reply reply = call(&request, sizeof request, deadline_after(grace + std::chrono::seconds(10)), nullptr);
    if (reply.wire.known == 0) return ExitStatus::exited_with(-1);
    return reply.wire.exited != 0 ? ExitStatus::exited_with(reply.wire.value) : ExitStatus::killed_by(reply.wire.value);
}

}  // namespace coproc::detail
