// A remote worker's side of the wire (see coproc/remote_pool.hpp): a thread
// owns the DEALER socket, says hello, keeps the heartbeat while the main
// thread runs tasks, and rejoins when told it was lost (or, in wait mode,
// when the host went silent). The main thread only trades payloads with it
// under a mutex.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <zmq.hpp>

#include "coproc/detail/unique_fd.hpp"
#include "coproc/error.hpp"
#include "coproc/remote_pool.hpp"
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

    std::mutex mutex;
    std::condition_variable changed;
    // Guarded by mutex:
    enum class Phase { joining, joined, refused, ended } phase = Phase::joining;
    std::string refusal;
    int exit_code = 0;
    std::uint64_t session = 0;  // bumped at every (re)join
    std::string ready;
    std::deque<std::pair<std::uint64_t, std::string>> inbox;  // (session, chunk)
    std::deque<std::string> outbox;
    bool main_waiting = false;
    bool stopping = false;
    UniqueFd wake;  // eventfd: the thread's poll sees outbox and stop

    std::thread thread;
    zmq::context_t context;

    // The worker ends with `code` (next() returns nullopt). Call with mutex held.
    void end_locked(int code) {
        phase = Phase::ended;
        exit_code = code;
        changed.notify_all();
    }

    void notify_thread() {
        const std::uint64_t one = 1;
        (void)!::write(wake.get(), &one, sizeof one);
    }

    zmq::socket_t connect() {
        zmq::socket_t s(context, zmq::socket_type::dealer);
        s.set(zmq::sockopt::linger, 0);
        if (!options.server_key.empty()) {
            s.set(zmq::sockopt::curve_serverkey, options.server_key);
            s.set(zmq::sockopt::curve_publickey, options.keys.public_key);
            s.set(zmq::sockopt::curve_secretkey, options.keys.secret_key);
        }
        s.connect(options.connect);
        s.send(zmq::buffer(make_frame(Kind::hello, hello)), zmq::send_flags::dontwait);
        return s;
    }

    // The host is gone. Exit mode: end (the main thread returns 3; if it is
    // inside a task, the process exits now: nobody wants its result).
    // Wait mode: false, and the caller reconnects.
    bool host_lost(const char* why) {
        if (options.on_host_lost == RemoteWorkerOptions::OnHostLost::wait) return false;
        std::unique_lock lock(mutex);
        std::fprintf(stderr, "coproc: remote worker: %s; exiting\n", why);
        end_locked(3);
        if (!main_waiting && session != 0) {
            std::fflush(stderr);
            std::_Exit(3);
        }
        return true;
    }

    void run() noexcept {
        try {
            loop();
        } catch (const std::exception& e) {
            const std::lock_guard lock(mutex);
            std::fprintf(stderr, "coproc: remote worker: %s\n", e.what());
            end_locked(1);
        }
    }

    void loop() {
        zmq::socket_t socket = connect();
        Welcome beat{};  // until welcomed: join_timeout governs
        bool joined = false;
        Clock::time_point heard = Clock::now();
        Clock::time_point sent = Clock::now();
        const Clock::time_point started = Clock::now();
        Clock::time_point last_turn = Clock::now();
        for (;;) {
            {
                const std::lock_guard lock(mutex);
                if (stopping || phase == Phase::ended || phase == Phase::refused) return;
            }
            zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake.get(), ZMQ_POLLIN, 0}};
            zmq::poll(items, 2,
                      std::chrono::milliseconds(joined ? beat.heartbeat_interval / 2 : std::chrono::milliseconds(100)));
            if ((items[1].revents & ZMQ_POLLIN) != 0) {
                std::uint64_t v = 0;
                (void)!::read(wake.get(), &v, sizeof v);
            }
            // One timestamp per turn, taken here, decides this turn's
            // silences: a stop anywhere in the turn then shows up as a gap
            // at the next turn's check below, never as the host's silence.
            const auto now = Clock::now();
            // Not run for longer than the heartbeat timeout (stopped, or
            // starved): the silence was ours. The host gets a fresh timeout
            // to answer our next heartbeat (with "lost", if it gave us up).
            if (session != 0 && now - last_turn > beat.heartbeat_timeout) {
                heard = now;
                sent = now - beat.heartbeat_interval;  // a heartbeat now
            }
            last_turn = now;
            while ((items[0].revents & ZMQ_POLLIN) != 0) {
                zmq::message_t msg;
                if (!socket.recv(msg, zmq::recv_flags::dontwait)) break;
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
                        joined = true;
                        std::string ready_again;
                        {
                            const std::lock_guard lock(mutex);
                            ++session;
                            phase = Phase::joined;
                            ready_again = ready;  // empty at the first join: set_ready comes after
                            changed.notify_all();
                        }
                        if (!ready_again.empty())
                            socket.send(zmq::buffer(make_frame(Kind::pool, ready_again)), zmq::send_flags::dontwait);
                        sent = Clock::now();
                        break;
                    }
                    case Kind::refuse: {
                        const std::lock_guard lock(mutex);
                        refusal = std::string(frame->body);
                        phase = Phase::refused;
                        changed.notify_all();
                        return;
                    }
                    case Kind::pool: {
                        const std::lock_guard lock(mutex);
                        inbox.emplace_back(session, std::string(frame->body));
                        changed.notify_all();
                        break;
                    }
                    case Kind::close: {
                        const std::lock_guard lock(mutex);
                        end_locked(0);
                        return;
                    }
                    case Kind::lost:
                        // Given up by the host (we were silent, or slow): what we
                        // hold is someone else's now. Join again, afresh.
                        if (joined) {
                            rejoin(socket, joined);
                            heard = sent = Clock::now();
                        }
                        break;
                    default: break;  // heartbeat: heard is updated
                }
                items[0].revents = ZMQ_POLLIN;
            }
            // Results (and the ready message) the main thread queued.
            std::deque<std::string> out;
            {
                const std::lock_guard lock(mutex);
                out.swap(outbox);
            }
            for (auto& payload : out) {
                if (joined) socket.send(zmq::buffer(make_frame(Kind::pool, payload)), zmq::send_flags::dontwait);
                sent = Clock::now();
            }
            if (!joined) {
                if (now - started > options.join_timeout && session == 0) {
                    if (options.on_host_lost == RemoteWorkerOptions::OnHostLost::wait) continue;
                    const std::lock_guard lock(mutex);
                    refusal = fmt::format("coproc: remote worker: no answer from '{}' within join_timeout ({} ms)",
                                          options.connect, options.join_timeout.count());
                    end_locked(3);
                    return;
                }
                if (session != 0 && now - heard > beat.heartbeat_timeout) {
                    // Rejoining, and the host went silent meanwhile.
                    if (host_lost("the host went silent past its heartbeat timeout")) return;
                    // Waiting for a new host: a fresh connection now and then.
                    socket = connect();
                    heard = now;
                }
                continue;
            }
            if (now - heard > beat.heartbeat_timeout) {
                if (host_lost("the host went silent past its heartbeat timeout")) return;
                rejoin(socket, joined);
                heard = sent = Clock::now();
                continue;
            }
            if (now - sent >= beat.heartbeat_interval) {
                socket.send(zmq::buffer(make_frame(Kind::heartbeat)), zmq::send_flags::dontwait);
                sent = now;
            }
        }
    }

    // A new connection (so a new identity at the host) and a new hello; the
    // tasks of the old session are dropped.
    void rejoin(zmq::socket_t& socket, bool& joined) {
        joined = false;
        {
            const std::lock_guard lock(mutex);
            inbox.clear();
            outbox.clear();
            phase = Phase::joining;
        }
        socket = connect();
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
    state_->wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state_->wake) throw_system_error(errno, "eventfd");
    state_->thread = std::thread([s = state_.get()] { s->run(); });
}

RemoteWorkerLink::~RemoteWorkerLink() {
    {
        const std::lock_guard lock(state_->mutex);
        state_->stopping = true;
    }
    state_->notify_thread();
    if (state_->thread.joinable()) state_->thread.join();
}

void RemoteWorkerLink::await_joined() {
    std::unique_lock lock(state_->mutex);
    state_->changed.wait(lock, [&] { return state_->phase != State::Phase::joining; });
    if (state_->phase == State::Phase::refused) throw SpawnError(state_->refusal);
    if (state_->phase == State::Phase::ended) {
        if (state_->exit_code == 3) throw Timeout(state_->refusal);
        throw ChannelClosed("coproc: remote worker: closed before it joined");
    }
}

void RemoteWorkerLink::set_ready(std::string payload) {
    {
        const std::lock_guard lock(state_->mutex);
        state_->ready = payload;
        state_->outbox.push_back(std::move(payload));  // the current session's
    }
    state_->notify_thread();
}

std::optional<RemoteWorkerLink::Tasks> RemoteWorkerLink::next() {
    std::unique_lock lock(state_->mutex);
    state_->main_waiting = true;
    state_->changed.wait(lock, [&] {
        return !state_->inbox.empty() || state_->phase == State::Phase::ended || state_->phase == State::Phase::refused;
    });
    state_->main_waiting = false;
    if (state_->inbox.empty()) return std::nullopt;
    Tasks t;
    t.session = state_->inbox.front().first;
    while (!state_->inbox.empty() && state_->inbox.front().first == t.session) {
        t.payloads.push_back(std::move(state_->inbox.front().second));
        state_->inbox.pop_front();
    }
    return t;
}

void RemoteWorkerLink::send(std::uint64_t session, std::vector<std::string> payloads) {
    {
        const std::lock_guard lock(state_->mutex);
        if (session != state_->session || state_->phase != State::Phase::joined) return;
        for (auto& p : payloads) state_->outbox.push_back(std::move(p));
    }
    state_->notify_thread();
}

int RemoteWorkerLink::exit_code() const noexcept {
    const std::lock_guard lock(state_->mutex);
    return state_->phase == State::Phase::refused ? 2 : state_->exit_code;
}

}  // namespace coproc::detail
