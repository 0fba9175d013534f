// The host's side of remote pool workers (see coproc/remote_pool.hpp): a
// ROUTER socket under a mutex, which the pool's thread reads and writes
// itself (so tasks and results cross no other thread of the host), and a
// keeper thread that serves the ZAP handler (which admits CURVE keys) and,
// every half heartbeat interval, reads what waits, sends heartbeats and
// gives up silent workers, whether or not the pool's thread is in a call.
#include <sys/epoll.h>
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
#include "remote_message.hpp"
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
        const std::lock_guard lock(endpoint_mutex_);
        return endpoint_;
    }

    void start(std::string_view task_type, std::string_view result_type, std::uint64_t fingerprint) override {
        if (thread_.joinable()) throw std::logic_error("coproc: a RemoteWorkers listener serves one pool");
        want_.wire_abi = this_wire_abi();
        want_.task_type = task_type;
        want_.result_type = result_type;
        want_.fingerprint = fingerprint;
        const auto new_eventfd = [] {
            return detail::UniqueFd(
                static_cast<int>(detail::check_unix(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")));
        };
        events_fd_ = new_eventfd();
        stop_fd_ = new_eventfd();
        epoll_fd_ =
            detail::UniqueFd(static_cast<int>(detail::check_unix(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")));
        // Bound here, on the pool's thread, so a bad endpoint is the pool
        // constructor's exception. The ZAP socket then moves to the keeper
        // (ZeroMQ allows that with a full memory barrier: the thread start);
        // the router is used under router_mutex_ (a full barrier too).
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
            // fd() is level-triggered: the router's own fd (readable when
            // its mailbox has news) or events_fd_ (set whenever a call left
            // something to take: ZeroMQ's fd alone says nothing of messages
            // that a send or the keeper already noticed).
            for (const int f : {router_.get(zmq::sockopt::fd), events_fd_.get()}) {
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.fd = f;
                detail::check_unix(::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, f, &ev), "epoll_ctl");
            }
            const std::lock_guard lock(endpoint_mutex_);
            endpoint_ = router_.get(zmq::sockopt::last_endpoint);
        } catch (const zmq::error_t& e) {
            router_.close();
            zap_.close();
            context_.reset();
            throw Error(fmt::format("coproc: cannot listen for remote workers on '{}': {}", options_.bind, e.what()));
        }
        thread_ = std::thread([this] { keep(); });
    }

    [[nodiscard]] int fd() const noexcept override { return epoll_fd_.get(); }

    void take_events(std::vector<Event>& out) override {
        const std::lock_guard lock(router_mutex_);
        if (events_signaled_) clear_event(events_fd_.get());  // a syscall saved when not set
        events_signaled_ = false;
        try {
            read_router();
        } catch (const zmq::error_t& e) {
            fail(e);
        }
        // The payloads were appended to arena_; it becomes the caller's
        // (valid until the next call), and the last one's buffer is reused.
        std::swap(arena_, taken_arena_);
        detail::clear_for_reuse(arena_);
        for (const auto& e : events_)
            out.push_back({e.kind, e.worker, std::string_view(taken_arena_).substr(e.offset, e.size)});
        events_.clear();
        settle();  // after taking them: what is taken needs no wake-up
    }

    void send(std::uint64_t worker, const detail::PackedMessages& messages) override {
        const std::lock_guard lock(router_mutex_);
        auto id = by_id_.find(worker);
        if (id == by_id_.end()) return;  // gone: its loss was (or will be) an event
        const std::string routing = id->second;
        bool ok = true;
        for (auto& frame : pool_frames(messages.bytes(), batch_bytes))
            if (ok) ok = send_raw(routing, std::move(frame));
        if (!ok)
            forget(routing, true);
        else
            peers_[routing].sent = Clock::now();
        settle();
    }

    void drop(std::uint64_t worker) override {
        const std::lock_guard lock(router_mutex_);
        auto id = by_id_.find(worker);
        if (id == by_id_.end()) return;
        const std::string routing = id->second;
        send_raw(routing, make_frame(Kind::lost));
        forget(routing, false);
        settle();
    }

    void stop() noexcept override {
        if (!thread_.joinable()) return;
        write_event(stop_fd_.get());
        thread_.join();
        {
            const std::lock_guard lock(router_mutex_);
            for (auto& [routing, peer] : peers_) send_raw(routing, make_frame(Kind::close));
            router_.close();
        }
        zap_.close();
        context_.reset();  // waits up to the router's linger for the close frames to leave
    }

private:
    struct Peer {
        std::uint64_t id = 0;
        std::string label;
        Clock::time_point heard{};
        Clock::time_point sent{};
    };

    // An event waiting for the pool's thread, its payload in arena_.
    struct Pending {
        Event::Kind kind;
        std::uint64_t worker;
        std::size_t offset;
        std::size_t size;
    };
    // Events wait in events_ until the pool's thread takes them.
    // Call with router_mutex_ held.
    void push_event(Event::Kind kind, std::uint64_t worker, std::string_view payload = {}) {
        events_.push_back({kind, worker, arena_.size(), payload.size()});
        arena_.append(payload);
    }

    // After any use of the router: ZeroMQ's fd is edge-like (a send or a
    // read may consume its signal while messages wait), so messages
    // waiting, or events, set events_fd_ for the pool's wait to see.
    // Call with router_mutex_ held.
    void settle() {
        bool readable = false;
        try {
            readable = (router_.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
        } catch (const zmq::error_t&) {
            readable = false;  // a closing context: nothing more to read
        }
        if ((readable || !events_.empty()) && !events_signaled_) {
            write_event(events_fd_.get());
            events_signaled_ = true;
        }
    }

    // A ZeroMQ failure on the router cannot be handed to anyone: every
    // worker joined is declared lost (its tasks go elsewhere, as after any
    // loss) and the listener goes on; workers that can still reach it
    // join again.
    void fail(const zmq::error_t& e) {
        std::fprintf(stderr, "coproc: remote workers' listener: %s\n", e.what());
        std::vector<std::string> all;
        for (const auto& [routing, peer] : peers_) all.push_back(routing);
        for (const auto& routing : all) forget(routing, true);
    }

    // The keeper: the ZAP handler, and a tick every half heartbeat interval.
    void keep() noexcept {
        const auto interval = options_.heartbeat_interval;
        Clock::time_point next_tick = Clock::now() + interval / 2;
        try {
            for (;;) {
                std::vector<zmq::pollitem_t> items = {{nullptr, stop_fd_.get(), ZMQ_POLLIN, 0}};
                if (zap_) items.push_back({zap_.handle(), 0, ZMQ_POLLIN, 0});
                const auto wait = std::max(Clock::duration::zero(), next_tick - Clock::now());
                zmq::poll(items, std::chrono::duration_cast<std::chrono::milliseconds>(wait));
                if ((items[0].revents & ZMQ_POLLIN) != 0) return;
                if (zap_ && (items[1].revents & ZMQ_POLLIN) != 0) serve_zap();
                if (Clock::now() >= next_tick) {
                    const std::lock_guard lock(router_mutex_);
                    try {
                        read_router();
                        tick();
                    } catch (const zmq::error_t& e) {
                        fail(e);
                    }
                    settle();
                    next_tick = Clock::now() + interval / 2;
                }
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "coproc: remote workers' listener: its keeper stopped: %s\n", e.what());
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

    // Takes the frames waiting, a bounded batch (a flood cannot hold the
    // caller; what is left makes settle() wake the pool again). Call with
    // router_mutex_ held.
    void read_router() {
        for (int i = 0; i < 4096; ++i) {
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
            case Kind::pool: push_event(Event::Kind::message, it->second.id, frame->body); break;
            case Kind::batch: {
                parts_.clear();
                if (!split_batch(frame->body, parts_)) {
                    ++malformed_;
                    break;
                }
                for (const auto part : parts_) push_event(Event::Kind::message, it->second.id, part);
                break;
            }
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
                 make_frame(Kind::welcome, encode_welcome({options_.heartbeat_interval, options_.heartbeat_timeout,
                                                           static_cast<std::uint64_t>(std::max<std::int64_t>(
                                                               0, options_.max_message_size))})));
        push_event(Event::Kind::joined, peer.id, peer.label);
    }

    // Heartbeats out; workers silent past the timeout are lost. Call with
    // router_mutex_ held.
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
        if (event) push_event(Event::Kind::lost, id);
    }

    void remember_lost(const std::string& routing) {
        if (lost_order_.size() >= max_remembered_lost) {
            lost_ids_.erase(lost_order_.front());
            lost_order_.pop_front();
        }
        if (lost_ids_.insert(routing).second) lost_order_.push_back(routing);
    }

    // False if the peer cannot take it (disconnected, or its queue full).
    bool send_raw(const std::string& routing, std::string frame) {
        try {
            if (!router_.send(zmq::buffer(routing), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
            return router_.send(frame_message(std::move(frame)), zmq::send_flags::dontwait).has_value();
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
    zmq::socket_t zap_;          // the keeper's
    std::thread thread_;         // the keeper
    detail::UniqueFd stop_fd_;   // ends the keeper
    detail::UniqueFd epoll_fd_;  // fd(): the router's fd and events_fd_
    detail::UniqueFd events_fd_;

    mutable std::mutex endpoint_mutex_;
    std::string endpoint_;

    std::mutex router_mutex_;  // guards the router and everything below
    zmq::socket_t router_;
    std::vector<Pending> events_;                  // for the pool's thread to take
    std::string arena_;                            // their payloads
    std::string taken_arena_;                      // the payloads of the events last taken
    std::vector<std::string_view> parts_;          // a batch frame's messages, split
    bool events_signaled_ = false;                 // events_fd_ is set
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
