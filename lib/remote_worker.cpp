// A remote worker's side of the wire (see coproc/remote_pool.hpp): one
// DEALER socket under a mutex, turned by the main thread while it waits for
// tasks and by a keeper thread while it runs one. It says hello, keeps the
// heartbeat, and rejoins when told it was lost (or, in wait mode, when the
// host went silent).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include "coproc/error.hpp"
#include "coproc/remote_pool.hpp"
#include "remote_message.hpp"
#include "remote_wire.hpp"

namespace coproc::detail {

using namespace remote;
using Clock = std::chrono::steady_clock;

namespace {
std::string default_label() {
    char host[256] = "?";
    (void)::gethostname(host, sizeof host - 1);
    return fmt::format("{}:{}", host, ::getpid());
}
}  // namespace

std::string remote_hello(const std::string& label, const char* task_type, const char* result_type,
                         std::uint64_t fingerprint) {
    Hello h;
    h.wire_abi = this_wire_abi();
    h.task_type = task_type;
    h.result_type = result_type;
    h.fingerprint = fingerprint;
    h.label = label.empty() ? default_label() : label;
    return encode_hello(h);
}

struct RemoteWorkerLink::State {
    RemoteWorkerOptions options;
    std::string hello;
    zmq::context_t context;

    // The connection. Whoever holds `mutex` turns it: the main thread while
    // it waits in await_joined() or next() (so tasks and results cross no
    // other thread), the keeper thread while the main thread is elsewhere
    // (a task, the initializer), so the heartbeat goes on.
    std::mutex mutex;
    // Guarded by mutex:
    zmq::socket_t socket;
    enum class Phase { joining, joined, refused, ended } phase = Phase::joining;
    std::string refusal;
    int exit_code = 0;
    std::uint64_t session = 0;  // bumped at every (re)join
    std::string ready;          // sent first after every (re)join
    Welcome beat{};             // until welcomed: join_timeout governs
    // Chunks of the current session, back to back in inbox_bytes (no
    // buffer per chunk; next() hands the bytes over and takes a used buffer back).
    std::string inbox_bytes;
    std::vector<std::pair<std::size_t, std::size_t>> inbox;  // (offset, size)
    std::vector<std::string_view> parts;                     // a batch frame's, split
    bool joined = false;
    Clock::time_point heard = Clock::now();
    Clock::time_point sent = Clock::now();
    Clock::time_point started = Clock::now();
    Clock::time_point last_turn = Clock::now();

    // The keeper: wakes every quarter heartbeat interval and turns the
    // connection if the main thread does not.
    std::mutex keeper_mutex;
    std::condition_variable keeper_wake;
    bool stopping = false;                            // guarded by keeper_mutex
    std::atomic<std::int64_t> keeper_period_ms{100};  // until welcomed
    std::thread keeper;

    // The worker ends with `code` (next() returns nullopt). Call with mutex held.
    void end_locked(int code) {
        phase = Phase::ended;
        exit_code = code;
    }

    zmq::socket_t connect() {
        zmq::socket_t s(context, zmq::socket_type::dealer);
        s.set(zmq::sockopt::linger, 0);
        // Never full: what it sends is bounded by the tasks the host lent
        // it, and a full queue would drop results (sends never block here).
        s.set(zmq::sockopt::sndhwm, 0);
        if (!options.server_key.empty()) {
            s.set(zmq::sockopt::curve_serverkey, options.server_key);
            s.set(zmq::sockopt::curve_publickey, options.keys.public_key);
            s.set(zmq::sockopt::curve_secretkey, options.keys.secret_key);
        }
        s.connect(options.connect);
        s.send(zmq::buffer(make_frame(Kind::hello, hello)), zmq::send_flags::dontwait);
        return s;
    }

    // The host is gone. Exit mode: end (the main thread returns 3; if the
    // keeper found it, the main thread is inside a task or the initializer
    // and the process exits now: nobody wants its result). Wait mode:
    // false, and the caller reconnects. Call with mutex held.
    bool host_lost(bool on_main) {
        if (options.on_host_lost == RemoteWorkerOptions::OnHostLost::wait) return false;
        std::fprintf(stderr, "coproc: remote worker: the host went silent past its heartbeat timeout; exiting\n");
        end_locked(3);
        if (!on_main && session != 0) {
            std::fflush(stderr);
            std::_Exit(3);
        }
        return true;
    }

    // The "ready" message, first after every (re)join. Call with mutex held.
    void send_ready() { socket.send(zmq::buffer(make_frame(Kind::pool, ready)), zmq::send_flags::dontwait); }

    // A new connection (so a new identity at the host) and a new hello; the
    // tasks of the old session are dropped. Call with mutex held.
    void rejoin() {
        joined = false;
        inbox.clear();
        inbox_bytes.clear();
        phase = Phase::joining;
        socket = connect();
        heard = sent = Clock::now();
    }

    // One turn of the connection: waits up to `wait` for frames, takes
    // them, keeps the heartbeat, notices a silent host. Call with mutex
    // held; `on_main`: by the main thread.
    void turn(std::chrono::milliseconds wait, bool on_main) {
        zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, wait);
        // One timestamp per turn, taken here, decides this turn's
        // silences: a stop anywhere in the turn then shows up as a gap at
        // the next turn's check below, never as the host's silence.
        const auto now = Clock::now();
        // Not run for longer than the heartbeat timeout (stopped, or
        // starved): the silence was ours. The host gets a fresh timeout to
        // answer our next heartbeat (with "lost", if it gave us up).
        if (session != 0 && now - last_turn > beat.heartbeat_timeout) {
            heard = now;
            sent = now - beat.heartbeat_interval;  // a heartbeat now
        }
        last_turn = now;
        if ((item.revents & ZMQ_POLLIN) != 0 && !read_frames()) return;
        if (!joined) {
            if (session == 0 && now - started > options.join_timeout) {
                if (options.on_host_lost == RemoteWorkerOptions::OnHostLost::wait) return;
                refusal = fmt::format("coproc: remote worker: no answer from '{}' within join_timeout ({} ms)",
                                      options.connect, options.join_timeout.count());
                end_locked(3);
                return;
            }
            if (session != 0 && now - heard > beat.heartbeat_timeout) {
                // Rejoining, and the host went silent meanwhile.
                if (host_lost(on_main)) return;
                // Waiting for a new host: a fresh connection now and then.
                socket = connect();
                heard = now;
            }
            return;
        }
        if (now - heard > beat.heartbeat_timeout) {
            if (host_lost(on_main)) return;
            rejoin();
            return;
        }
        if (now - sent >= beat.heartbeat_interval) {
            socket.send(zmq::buffer(make_frame(Kind::heartbeat)), zmq::send_flags::dontwait);
            sent = now;
        }
    }

    // Takes every frame waiting; false once the worker is refused or ended.
    bool read_frames() {
        for (;;) {
            zmq::message_t msg;
            if (!socket.recv(msg, zmq::recv_flags::dontwait)) return true;
            while (msg.more()) {  // not ours: skip the rest
                (void)socket.recv(msg, zmq::recv_flags::dontwait);
            }
            const auto frame = parse_frame(msg.to_string_view());
            if (!frame) continue;
            heard = Clock::now();
            switch (frame->kind) {
                case Kind::welcome: {
                    const auto w = decode_welcome(frame->body);
                    if (!w || joined) break;
                    beat = *w;
                    keeper_period_ms = std::max<std::int64_t>(1, beat.heartbeat_interval.count() / 4);
                    joined = true;
                    ++session;
                    phase = Phase::joined;
                    if (!ready.empty()) send_ready();  // empty at the first join: set_ready comes after
                    sent = Clock::now();
                    break;
                }
                case Kind::refuse:
                    refusal = std::string(frame->body);
                    phase = Phase::refused;
                    return false;
                case Kind::pool: to_inbox(frame->body); break;
                case Kind::batch:
                    parts.clear();
                    if (split_batch(frame->body, parts))
                        for (const auto part : parts) to_inbox(part);
                    break;
                case Kind::close: end_locked(0); return false;
                case Kind::lost:
                    // Given up by the host (we were silent, or slow): what we
                    // hold is someone else's now. Join again, afresh.
                    if (joined) {
                        rejoin();
                        return true;  // the old socket's frames are the old session's
                    }
                    break;
                default: break;  // heartbeat: heard is updated
            }
        }
    }

    void to_inbox(std::string_view chunk) {
        inbox.emplace_back(inbox_bytes.size(), chunk.size());
        inbox_bytes.append(chunk);
    }

    // Batches fit the host's limit on a frame.
    [[nodiscard]] std::size_t batch_limit() const noexcept {
        if (beat.max_message_size == 0) return batch_bytes;
        return static_cast<std::size_t>(std::min<std::uint64_t>(batch_bytes, beat.max_message_size));
    }
    [[nodiscard]] bool over() const noexcept { return phase == Phase::ended || phase == Phase::refused; }
    [[nodiscard]] std::chrono::milliseconds main_wait() const noexcept {
        return joined ? std::chrono::milliseconds(beat.heartbeat_interval / 2) : std::chrono::milliseconds(100);
    }

    void keep() noexcept {
        try {
            for (;;) {
                {
                    std::unique_lock k(keeper_mutex);
                    keeper_wake.wait_for(k, std::chrono::milliseconds(keeper_period_ms.load()),
                                         [&] { return stopping; });
                    if (stopping) return;
                }
                const std::unique_lock lock(mutex, std::try_to_lock);
                if (!lock.owns_lock() || over()) continue;  // the main thread turns it, or it is over
                turn(std::chrono::milliseconds(0), false);
            }
        } catch (const std::exception& e) {
            const std::lock_guard lock(mutex);
            std::fprintf(stderr, "coproc: remote worker: %s\n", e.what());
            end_locked(1);
        }
    }
};

RemoteWorkerLink::RemoteWorkerLink(RemoteWorkerOptions options, std::string hello_body)
    : state_(std::make_unique<State>()) {
    if (options.connect.empty()) throw std::invalid_argument("coproc: RemoteWorkerOptions::connect is empty");
    if (!options.server_key.empty() && (options.keys.public_key.size() != 40 || options.keys.secret_key.size() != 40))
        throw std::invalid_argument(
            "coproc: RemoteWorkerOptions: server_key needs this worker's keys (40-character Z85)");
    state_->options = std::move(options);
    state_->hello = std::move(hello_body);
    state_->socket = state_->connect();
    state_->keeper = std::thread([s = state_.get()] { s->keep(); });
}

RemoteWorkerLink::~RemoteWorkerLink() {
    {
        const std::lock_guard lock(state_->keeper_mutex);
        state_->stopping = true;
    }
    state_->keeper_wake.notify_all();
    if (state_->keeper.joinable()) state_->keeper.join();
}

void RemoteWorkerLink::await_joined() {
    const std::lock_guard lock(state_->mutex);
    while (state_->phase == State::Phase::joining) state_->turn(state_->main_wait(), true);
    if (state_->phase == State::Phase::refused) throw SpawnError(state_->refusal);
    if (state_->phase == State::Phase::ended) {
        if (state_->exit_code == 3) throw Timeout(state_->refusal);
        throw ChannelClosed("coproc: remote worker: closed before it joined");
    }
}

void RemoteWorkerLink::set_ready(std::string payload) {
    const std::lock_guard lock(state_->mutex);
    state_->ready = std::move(payload);
    if (state_->joined) state_->send_ready();  // else the coming welcome sends it
}

bool RemoteWorkerLink::next(Tasks& out) {
    const std::lock_guard lock(state_->mutex);
    // What already waits is taken without a poll first.
    if (state_->inbox.empty() && !state_->over() && state_->joined) (void)state_->read_frames();
    while (state_->inbox.empty() && !state_->over()) state_->turn(state_->main_wait(), true);
    out.payloads.clear();
    if (state_->inbox.empty()) return false;
    out.session = state_->session;
    // The inbox's bytes become out's; out's last buffer is reused for the next.
    std::swap(out.bytes, state_->inbox_bytes);
    clear_for_reuse(state_->inbox_bytes);
    for (const auto& [offset, size] : state_->inbox)
        out.payloads.push_back(std::string_view(out.bytes).substr(offset, size));
    state_->inbox.clear();
    return true;
}

void RemoteWorkerLink::send(std::uint64_t session, const PackedMessages& messages) {
    const std::lock_guard lock(state_->mutex);
    if (session != state_->session || !state_->joined) return;  // given to someone else since
    for (auto& frame : pool_frames(messages.bytes(), state_->batch_limit()))
        state_->socket.send(frame_message(std::move(frame)), zmq::send_flags::dontwait);
    state_->sent = Clock::now();
}

int RemoteWorkerLink::exit_code() const noexcept {
    const std::lock_guard lock(state_->mutex);
    return state_->phase == State::Phase::refused ? 2 : state_->exit_code;
}

}  // namespace coproc::detail
