// The host's side of remote pool workers (see coproc/remote_pool.hpp): a
// thread of its own owns a ROUTER socket (and the ZAP handler that admits
// CURVE keys), keeps every worker's heartbeat, and trades events and
// outgoing messages with the pool's thread through two locked queues and
// two eventfds. The pool's thread never touches a ZeroMQ socket.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "coproc/detail/unique_fd.hpp"
#include "coproc/error.hpp"
#include "coproc/remote_pool.hpp"
#include "remote_wire.hpp"

namespace coproc {

namespace {

using Clock = std::chrono::steady_clock;
using namespace detail::remote;

// A key in Z85 (40 characters) to its 32 bytes; empty if malformed.
std::string z85_key(const std::string& text) {
    if (text.size() != 40) return {};
    std::string out(32, '\0');
    if (zmq_z85_decode(reinterpret_cast<std::uint8_t*>(out.data()), text.c_str()) == nullptr) return {};
    return out;
}

bool is_loopback(const std::string& endpoint) {
    if (endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://")) return true;
    for (const char* host : {"tcp://127.", "tcp://localhost:", "tcp://[::1]:", "tcp://lo:"})
        if (endpoint.starts_with(host)) return true;
    return false;
}

void write_event(int fd) noexcept {
    const std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
}
void clear_event(int fd) noexcept {
    std::uint64_t value = 0;
    (void)!::read(fd, &value, sizeof value);
}

// Frames from a routing id given up are answered with "lost" at most this
// often, and at most this many such ids are remembered.
constexpr std::size_t max_remembered_lost = 4096;

class ZmqHub final : public detail::RemoteHub {
public:
    explicit ZmqHub(RemoteListenOptions options) : options_(std::move(options)) {}
    ~ZmqHub() override { stop(); }

    [[nodiscard]] RemoteStats stats() const override {
        RemoteStats s;
        s.joined = joined_.load();
        s.lost = lost_.load();
        s.refused = refused_.load();
        s.malformed = malformed_.load();
        s.late = late_.load();
        s.connected = connected_.load();
        return s;
    }
    [[nodiscard]] std::string endpoint() const override {
        const std::lock_guard lock(mutex_);
        return endpoint_;
    }

    void start(std::string_view task_type, std::string_view result_type, std::uint64_t fingerprint) override {
        if (thread_.joinable()) throw std::logic_error("coproc: a RemoteWorkers listener serves one pool");
        want_.wire_abi = this_wire_abi();
        want_.task_type = task_type;
        want_.result_type = result_type;
        want_.fingerprint = fingerprint;
        events_fd_ = detail::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        commands_fd_ = detail::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!events_fd_ || !commands_fd_) detail::throw_system_error(errno, "eventfd");
        // Bound here, on the pool's thread, so a bad endpoint is the pool
        // constructor's exception; then the sockets move to the thread
        // (ZeroMQ allows that with a full memory barrier: the thread start).
        context_ = std::make_unique<zmq::context_t>();
        try {
            if (!options_.keys.public_key.empty()) {
                zap_ = zmq::socket_t(*context_, zmq::socket_type::rep);
                zap_.bind("inproc://zeromq.zap.01");
            }
            router_ = zmq::socket_t(*context_, zmq::socket_type::router);
            router_.set(zmq::sockopt::router_mandatory, 1);
            router_.set(zmq::sockopt::maxmsgsize, options_.max_message_size);
            router_.set(zmq::sockopt::linger, 200);
            if (!options_.keys.public_key.empty()) {
                router_.set(zmq::sockopt::curve_server, 1);
                router_.set(zmq::sockopt::curve_secretkey, options_.keys.secret_key);
                router_.set(zmq::sockopt::zap_domain, "coproc");
            }
            router_.bind(options_.bind);
            const std::lock_guard lock(mutex_);
            endpoint_ = router_.get(zmq::sockopt::last_endpoint);
        } catch (const zmq::error_t& e) {
            router_.close();
            zap_.close();
            context_.reset();
            throw Error(fmt::format("coproc: cannot listen for remote workers on '{}': {}", options_.bind, e.what()));
        }
        thread_ = std::thread([this] { serve(); });
    }

    [[nodiscard]] int fd() const noexcept override { return events_fd_.get(); }

    void take_events(std::vector<Event>& out) override {
        const std::lock_guard lock(mutex_);
        clear_event(events_fd_.get());
        for (auto& e : events_) out.push_back(std::move(e));
        events_.clear();
    }

    void send(std::uint64_t worker, std::vector<std::string> payloads) override {
        push_command({Command::Kind::send, worker, std::move(payloads)});
    }
    void drop(std::uint64_t worker) override { push_command({Command::Kind::drop, worker, {}}); }

    void stop() noexcept override {
        if (!thread_.joinable()) return;
        try {
            push_command({Command::Kind::stop, 0, {}});
            thread_.join();
        } catch (...) {
            // cannot happen (the thread runs); nothing to do
        }
        context_.reset();
    }

private:
    struct Command {
        enum class Kind { send, drop, stop } kind;
        std::uint64_t worker;
        std::vector<std::string> payloads;
    };
    struct Peer {
        std::uint64_t id = 0;
        std::string label;
        Clock::time_point heard{};
        Clock::time_point sent{};
    };

    void push_command(Command c) {
        const std::lock_guard lock(mutex_);
        commands_.push_back(std::move(c));
        write_event(commands_fd_.get());
    }
    // Events wait in the thread's own list until flush_events(): one lock
    // and one wake-up of the pool per batch.
    void push_event(Event e) { pending_events_.push_back(std::move(e)); }
    void flush_events() {
        if (pending_events_.empty()) return;
        const std::lock_guard lock(mutex_);
        for (auto& e : pending_events_) events_.push_back(std::move(e));
        pending_events_.clear();
        write_event(events_fd_.get());
    }

    // The thread: until a stop command.
    void serve() noexcept {
        try {
            loop();
            flush_events();
        } catch (const std::exception& e) {
            // A ZeroMQ failure here cannot be handed to anyone: every worker
            // goes quiet, and the pool's heartbeat-less wait ends in losses.
            std::fprintf(stderr, "coproc: remote workers' listener stopped: %s\n", e.what());
        }
        try {
            for (auto& [routing, peer] : peers_) send_raw(routing, make_frame(Kind::close));
        } catch (...) {
            // best effort
        }
        router_.close();
        zap_.close();
    }

    void loop() {
        const auto interval = options_.heartbeat_interval;
        Clock::time_point next_tick = Clock::now() + interval / 2;
        for (;;) {
            std::vector<zmq::pollitem_t> items = {{router_.handle(), 0, ZMQ_POLLIN, 0},
                                                  {nullptr, commands_fd_.get(), ZMQ_POLLIN, 0}};
            if (zap_) items.push_back({zap_.handle(), 0, ZMQ_POLLIN, 0});
            const auto wait = std::max(Clock::duration::zero(), next_tick - Clock::now());
            zmq::poll(items, std::chrono::duration_cast<std::chrono::milliseconds>(wait));
            if (zap_ && (items[2].revents & ZMQ_POLLIN) != 0) serve_zap();
            if ((items[0].revents & ZMQ_POLLIN) != 0) read_router();
            if ((items[1].revents & ZMQ_POLLIN) != 0 && !run_commands()) return;
            if (Clock::now() >= next_tick) {
                tick();
                next_tick = Clock::now() + interval / 2;
            }
            flush_events();
        }
    }

    // ZAP (RFC 27): admit a CURVE client whose key is listed.
    void serve_zap() {
        for (int i = 0; i < 64; ++i) {
            std::vector<zmq::message_t> parts;
            if (!zmq::recv_multipart(zap_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
            if (parts.size() < 6) continue;
            const std::string version = parts[0].to_string();
            const std::string request_id = parts[1].to_string();
            const std::string mechanism = parts[5].to_string();
            bool ok = false;
            if (mechanism == "CURVE" && parts.size() >= 7) {
                const std::string key = parts[6].to_string();
                ok = std::find(allowed_.begin(), allowed_.end(), key) != allowed_.end();
            }
            if (!ok) ++refused_;
            const std::string_view status = ok ? "200" : "400";
            const std::string_view text = ok ? "OK" : "key not listed";
            std::array<zmq::const_buffer, 6> reply = {zmq::buffer(version), zmq::buffer(request_id),
                                                      zmq::buffer(status),  zmq::buffer(text),
                                                      zmq::const_buffer(),  zmq::const_buffer()};
            (void)zmq::send_multipart(zap_, reply);
        }
    }

    void read_router() {
        // A bounded batch, so commands and heartbeats keep their turn.
        for (int i = 0; i < 1024; ++i) {
            std::vector<zmq::message_t> parts;
            if (!zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
            if (parts.size() != 2) {
                ++malformed_;
                continue;
            }
            take(parts[0].to_string(), parts[1].to_string_view());
        }
    }

    void take(const std::string& routing, std::string_view bytes) {
        const auto frame = parse_frame(bytes);
        auto it = peers_.find(routing);
        if (it == peers_.end()) {
            if (lost_ids_.count(routing) != 0) {
                ++late_;
                send_raw(routing, make_frame(Kind::lost));
                return;
            }
            if (!frame || frame->kind != Kind::hello) {
                ++malformed_;
                // A worker whose connection ZeroMQ re-made (a network blip,
                // an oversized frame) speaks on without a hello: tell it to
                // join again.
                if (frame && (frame->kind == Kind::heartbeat || frame->kind == Kind::pool))
                    send_raw(routing, make_frame(Kind::lost));
                return;
            }
            admit(routing, frame->body);
            return;
        }
        if (!frame) {
            ++malformed_;
            return;
        }
        it->second.heard = Clock::now();
        switch (frame->kind) {
            case Kind::pool: push_event({Event::Kind::message, it->second.id, std::string(frame->body)}); break;
            case Kind::heartbeat: break;
            default: ++malformed_; break;
        }
    }

    void admit(const std::string& routing, std::string_view body) {
        const auto hello = decode_hello(body);
        if (!hello) {
            ++malformed_;
            return;
        }
        const std::string why = hello_mismatch(*hello, want_);
        if (!why.empty()) {
            ++refused_;
            send_raw(routing, make_frame(Kind::refuse, fmt::format("coproc: the pool refused this worker: {}", why)));
            remember_lost(routing);
            return;
        }
        Peer peer;
        peer.id = ++last_id_;
        peer.label = hello->label;
        peer.heard = peer.sent = Clock::now();
        by_id_[peer.id] = routing;
        peers_[routing] = peer;
        ++joined_;
        ++connected_;
        send_raw(routing,
                 make_frame(Kind::welcome, encode_welcome({options_.heartbeat_interval, options_.heartbeat_timeout})));
        push_event({Event::Kind::joined, peer.id, peer.label});
    }

    bool run_commands() {
        std::deque<Command> batch;
        {
            const std::lock_guard lock(mutex_);
            clear_event(commands_fd_.get());
            batch.swap(commands_);
        }
        for (auto& c : batch) {
            if (c.kind == Command::Kind::stop) return false;
            auto id = by_id_.find(c.worker);
            if (id == by_id_.end()) continue;  // gone: its loss was (or will be) an event
            const std::string routing = id->second;
            if (c.kind == Command::Kind::drop) {
                send_raw(routing, make_frame(Kind::lost));
                forget(routing, false);
                continue;
            }
            bool ok = true;
            for (const auto& payload : c.payloads)
                if (ok) ok = send_raw(routing, make_frame(Kind::pool, payload));
            if (!ok)
                forget(routing, true);
            else
                peers_[routing].sent = Clock::now();
        }
        return true;
    }

    // Heartbeats out; workers silent past the timeout are lost.
    void tick() {
        const auto now = Clock::now();
        // This thread did not run for longer than the timeout (the host was
        // stopped or starved): the silence was ours; everyone gets a fresh
        // timeout.
        if (now - last_tick_ > options_.heartbeat_timeout)
            for (auto& [routing, peer] : peers_) peer.heard = now;
        last_tick_ = now;
        std::vector<std::string> silent;
        for (auto& [routing, peer] : peers_) {
            if (now - peer.heard > options_.heartbeat_timeout) {
                silent.push_back(routing);
            } else if (now - peer.sent >= options_.heartbeat_interval) {
                if (send_raw(routing, make_frame(Kind::heartbeat)))
                    peer.sent = now;
                else
                    silent.push_back(routing);
            }
        }
        for (const auto& routing : silent) {
            send_raw(routing, make_frame(Kind::lost));
            forget(routing, true);
        }
    }

    // The peer is given up; `event`: the pool is told (a drop was its own).
    void forget(const std::string& routing, bool event) {
        auto it = peers_.find(routing);
        if (it == peers_.end()) return;
        const std::uint64_t id = it->second.id;
        by_id_.erase(id);
        peers_.erase(it);
        remember_lost(routing);
        --connected_;
        ++lost_;
        if (event) push_event({Event::Kind::lost, id, {}});
    }

    void remember_lost(const std::string& routing) {
        if (lost_order_.size() >= max_remembered_lost) {
            lost_ids_.erase(lost_order_.front());
            lost_order_.pop_front();
        }
        if (lost_ids_.insert(routing).second) lost_order_.push_back(routing);
    }

    // False if the peer cannot take it (disconnected, or its queue full).
    bool send_raw(const std::string& routing, const std::string& frame) {
        try {
            if (!router_.send(zmq::buffer(routing), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
            return router_.send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value();
        } catch (const zmq::error_t&) {
            return false;  // EHOSTUNREACH: ROUTER_MANDATORY, the peer is gone
        }
    }

    RemoteListenOptions options_;
    detail::remote::Hello want_;
    std::vector<std::string> allowed_ = [this] {
        std::vector<std::string> keys;
        for (const auto& k : options_.worker_keys) keys.push_back(z85_key(k));
        return keys;
    }();
    std::unique_ptr<zmq::context_t> context_;
    zmq::socket_t router_;
    zmq::socket_t zap_;
    std::thread thread_;

    mutable std::mutex mutex_;  // guards the queues and endpoint_
    std::string endpoint_;
    std::deque<Event> events_;
    std::vector<Event> pending_events_;  // the thread's, until flushed
    std::deque<Command> commands_;
    detail::UniqueFd events_fd_;
    detail::UniqueFd commands_fd_;

    // The thread's own.
    std::unordered_map<std::string, Peer> peers_;  // by routing id
    std::unordered_map<std::uint64_t, std::string> by_id_;
    std::set<std::string> lost_ids_;
    std::deque<std::string> lost_order_;
    std::uint64_t last_id_ = 0;
    Clock::time_point last_tick_ = Clock::now();

    std::atomic<std::uint64_t> joined_{0}, lost_{0}, refused_{0}, malformed_{0}, late_{0}, connected_{0};
};

}  // namespace

CurveKeyPair generate_curve_keys() {
    if (zmq_has("curve") == 0) throw Error("coproc: this libzmq was built without CURVE");
    char pub[41] = {};
    char sec[41] = {};
    if (zmq_curve_keypair(pub, sec) != 0)
        throw Error(fmt::format("coproc: zmq_curve_keypair: {}", zmq_strerror(errno)));
    return {pub, sec};
}

std::shared_ptr<RemoteWorkers> listen_for_workers(RemoteListenOptions options) {
    if (options.bind.empty()) throw std::invalid_argument("coproc: RemoteListenOptions::bind is empty");
    const bool keyed = !options.keys.public_key.empty() || !options.keys.secret_key.empty();
    if (keyed) {
        if (zmq_has("curve") == 0) throw std::invalid_argument("coproc: this libzmq was built without CURVE");
        if (z85_key(options.keys.public_key).empty() || z85_key(options.keys.secret_key).empty())
            throw std::invalid_argument("coproc: RemoteListenOptions::keys: each key must be 40 characters of Z85");
        if (options.worker_keys.empty())
            throw std::invalid_argument("coproc: RemoteListenOptions: keys without worker_keys admit no worker");
        for (const auto& k : options.worker_keys)
            if (z85_key(k).empty())
                throw std::invalid_argument(
                    fmt::format("coproc: RemoteListenOptions::worker_keys: '{}' is not a "
                                "40-character Z85 key",
                                k));
    } else if (!options.worker_keys.empty()) {
        throw std::invalid_argument("coproc: RemoteListenOptions: worker_keys without the host's keys");
    } else if (!is_loopback(options.bind) && !options.allow_insecure) {
        throw std::invalid_argument(fmt::format(
            "coproc: RemoteListenOptions: '{}' is not a loopback address: set keys (CURVE), or allow_insecure to "
            "let anyone who can connect take tasks",
            options.bind));
    }
    if (options.heartbeat_interval.count() <= 0 || options.heartbeat_timeout <= options.heartbeat_interval)
        throw std::invalid_argument(
            "coproc: RemoteListenOptions: heartbeat_timeout must exceed heartbeat_interval > 0");
    return std::make_shared<ZmqHub>(std::move(options));
}

}  // namespace coproc
