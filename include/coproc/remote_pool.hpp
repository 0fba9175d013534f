// coproc/remote_pool.hpp — pool workers on other machines, over ZeroMQ
// (libcoproc-bus; CMake coproc::bus, pkg-config coproc-bus). The host's
// pool binds an endpoint; worker programs started by anything (ssh, srun,
// a container, a systemd unit) connect to it and serve the same tasks with
// the same function API as local workers. Local and remote workers serve
// one pool at once.
//
//   // Host: a pool with 2 local workers that also admits remote ones.
//   auto keys = coproc::generate_curve_keys();            // the host's pair
//   coproc::PoolOptions options;
//   options.workers = 2;
//   options.remote = coproc::listen_for_workers({.bind = "tcp://0.0.0.0:5555", .keys = keys,
//                                                .worker_keys = {worker_public_key}});
//   coproc::Pool<Task, Result> pool(solve, options);
//
//   // A worker program's main(), on any machine:
//   return coproc::remote_worker_main<Task, Result>(
//       {.connect = "tcp://host:5555", .server_key = host_public_key, .keys = worker_keys}, solve);
//
// Security: ZeroMQ CURVE. The host has a key pair; a worker is admitted
// only with a public key the host lists (checked by a ZAP handler); a
// worker with another key gets nothing and is counted (stats().refused). A
// non-loopback bind without keys is std::invalid_argument unless
// allow_insecure says so.
//
// Delivery is at least once: a remote worker that dies, hangs (SIGSTOP) or
// is cut off is declared lost after heartbeat_timeout, and the tasks it held
// run again elsewhere (PoolOptions::max_retries applies; past it they fail
// with RemoteWorkerLost). A task can therefore run twice (its first run's
// side effects stay), but each result is delivered once: frames from a lost
// worker are ignored (stats().late), and it may rejoin as a new worker.
//
// The wire: every host of a pool must use the same Task and Result types
// with the same serialization (cereal's binary archive writes values as
// the machine holds them: same byte order and sizes), and a compiler with
// the same type names (typeid().name(): GCC and Clang on Linux agree).
// The handshake checks all of it; a mismatch is refused with the reason,
// which the worker prints before it exits with code 2.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "coproc/codec.hpp"
#include "coproc/detail/frame.hpp"
#include "coproc/detail/pool_worker.hpp"
#include "coproc/detail/remote_hub.hpp"
#include "coproc/error.hpp"
#include "coproc/pool_options.hpp"

namespace coproc {

/// A CURVE key pair, each key 40 characters of Z85.
struct CurveKeyPair {
    std::string public_key;
    std::string secret_key;
};
/// A new key pair. Throws Error if this libzmq was built without CURVE.
[[nodiscard]] CurveKeyPair generate_curve_keys();

/// Where and how a pool listens for remote workers (PoolOptions::remote).
struct RemoteListenOptions {
    /// A ZeroMQ endpoint: "tcp://0.0.0.0:5555", "tcp://127.0.0.1:*" (any
    /// free port: see RemoteWorkers::endpoint()).
    std::string bind;
    /// The host's key pair; empty: no encryption, no authentication.
    CurveKeyPair keys{};
    /// The public keys of the workers admitted (with keys set: required).
    std::vector<std::string> worker_keys{};
    /// Permits a non-loopback bind without keys (anyone who can connect may
    /// then take tasks and send results).
    bool allow_insecure = false;
    /// Both sides send a heartbeat this often...
    std::chrono::milliseconds heartbeat_interval{1000};
    /// ...and give the other up after hearing nothing for this long.
    std::chrono::milliseconds heartbeat_timeout{5000};
    /// Larger frames from a worker are refused by ZeroMQ (which then drops
    /// that connection: the worker is lost and may rejoin).
    std::int64_t max_message_size = std::int64_t{256} << 20;
};

/// A listener for PoolOptions::remote. Checks the options (throws
/// std::invalid_argument: empty bind, keys without worker_keys, malformed
/// keys, a non-loopback bind without keys and without allow_insecure,
/// heartbeat_timeout not above heartbeat_interval); the pool binds it when
/// it starts. One pool per listener.
[[nodiscard]] std::shared_ptr<RemoteWorkers> listen_for_workers(RemoteListenOptions options);

/// How a remote worker reaches its pool.
struct RemoteWorkerOptions {
    /// The pool's endpoint, e.g. "tcp://build-host:5555".
    std::string connect;
    /// The host's public key; empty: no CURVE (the host must have no keys).
    std::string server_key{};
    /// This worker's key pair (its public key must be in the host's list).
    CurveKeyPair keys{};
    /// When the host goes silent past its heartbeat timeout: exit (code 3),
    /// or wait for a host at the same endpoint and join it.
    enum class OnHostLost { exit, wait };
    OnHostLost on_host_lost = OnHostLost::exit;
    /// How long to wait for the host's answer to the first hello (wait
    /// mode: per attempt); past it, the worker exits with code 3.
    std::chrono::milliseconds join_timeout{10'000};
    /// Shown in the host's messages; empty: "hostname:pid".
    std::string label{};
};

namespace detail {

/// A remote worker's connection: the DEALER socket, turned by the calls
/// below while the main thread waits in them, and by a keeper thread while
/// it does not (a task, the initializer), so the heartbeat goes on. The
/// calls are for the worker's main thread.
class RemoteWorkerLink {
public:
    struct Tasks {
        std::uint64_t session = 0;               // which join they came through
        std::string bytes;                       // the chunks' bytes, back to back
        std::vector<std::string_view> payloads;  // every chunk waiting, oldest first (into bytes)
    };
    /// Connects, says hello, and starts the keeper thread.
    RemoteWorkerLink(RemoteWorkerOptions options, std::string hello_body);
    RemoteWorkerLink(const RemoteWorkerLink&) = delete;
    RemoteWorkerLink& operator=(const RemoteWorkerLink&) = delete;
    ~RemoteWorkerLink();
    /// Blocks until the host welcomes this worker. Throws SpawnError with
    /// the host's reason when refused, Timeout after join_timeout.
    void await_joined();
    /// Sent after every (re)join, first: the "ready" message.
    void set_ready(std::string payload);
    /// Blocks for the next chunks of tasks (all that wait) and puts them in
    /// `out` (its buffers are reused); false when the worker should end:
    /// exit_code() says with what (0: the host closed it, 3: the host was
    /// lost).
    [[nodiscard]] bool next(Tasks& out);
    /// Sends results taken in through `session`, in order; dropped if the
    /// worker has rejoined since (the host gave those tasks to someone else).
    void send(std::uint64_t session, const PackedMessages& messages);
    [[nodiscard]] int exit_code() const noexcept;

private:
    struct State;
    std::unique_ptr<State> state_;
};

/// The hello a worker of Task and Result sends.
[[nodiscard]] std::string remote_hello(const std::string& label, const char* task_type, const char* result_type,
                                       std::uint64_t fingerprint);

}  // namespace detail

/// A remote worker program's whole life: connects to the pool at
/// options.connect, runs `init` (may be empty) once joined, then serves
/// chunks of tasks with fn(const Task&) -> Result until the host closes it
/// (returns 0). Returns 2 after a line on stderr if the host refused it
/// (key, types, protocol) or its initializer threw, 3 if the host could not
/// be reached within join_timeout or was lost (OnHostLost::exit). While a
/// task runs, a thread of its own keeps the heartbeat: a worker busy for
/// hours is not lost, a stopped one is.
template <class Task, class Result, class F>
int remote_worker_main(const RemoteWorkerOptions& options, F&& fn, const std::function<void()>& init = {}) {
    using Message = detail::PoolMessage<Task, Result>;
    try {
        detail::RemoteWorkerLink link(options,
                                      detail::remote_hello(options.label, typeid(Task).name(), typeid(Result).name(),
                                                           detail::type_fingerprint<Message>));
        try {
            link.await_joined();
        } catch (const SpawnError& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 2;
        } catch (const Timeout& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 3;
        }
        if (init) {
            try {
                init();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "coproc: remote worker: its initializer failed: %s\n", e.what());
                return 2;
            }
        }
        {
            Message ready;
            ready.kind = detail::PoolMessageKind::ready;
            std::string bytes;
            encode_append(bytes, ready);
            link.set_ready(std::move(bytes));
        }
        // Reused from one batch to the next: no buffer per chunk.
        typename detail::RemoteWorkerLink::Tasks in;
        detail::PackedMessages answers;
        Message chunk, answer;
        while (link.next(in)) {
            // Every chunk that waited, answered in order, sent together.
            answers.clear();
            for (const std::string_view payload : in.payloads) {
                try {
                    detail::decode_reusing(chunk, payload);
                } catch (const ProtocolError&) {
                    continue;  // the host sent garbage: nothing to answer
                }
                detail::answer_chunk_into(answer, fn, chunk);
                answers.add([&](std::string& bytes) { encode_append(bytes, answer); });
            }
            link.send(in.session, answers);
        }
        return link.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "coproc: remote worker: %s\n", e.what());
        return 1;
    }
}

}  // namespace coproc
