// coproc/bus.hpp — publish/subscribe between processes and machines over
// ZeroMQ: shellbot's bus, wire-compatible, with its weaknesses fixed.
//
//   coproc::Bus bus;                                   // tcp://127.0.0.1:5555 (loopback only)
//   auto sub = bus.subscribe({"alerts", "jobs"});      // connects now
//   auto pub = bus.publish();
//   pub.start();                                       // binds; sends from a background thread
//   sub.wait_ready(5s);                                // no slow-joiner loss from here on
//   pub.put("alerts", {{"level", "high"}});            // returns at once
//   if (auto m = sub.get(1s)) fmt::print("{}: {}\n", m->channel, m->message.dump());
//   pub.stop();                                        // everything put before is delivered
//
// Wire: one ZeroMQ frame per (message, channel): channel, one space, then the
// JSON text exactly as Python's json.dumps writes it by default (", " and ": "
// separators, ASCII only with \uXXXX escapes, keys in insertion order), so
// shellbot peers interoperate. Subscriptions match channels exactly ("a" does
// not receive "ab") by subscribing to "channel " on the same wire; the empty
// channel "" receives everything, as in shellbot.
//
// Decisions: the publisher's loop is a thread of the process that calls
// start() (a ZeroMQ socket belongs to one thread; put() may be called from
// any thread and only queues). Memory is bounded by default: a publisher
// queues at most BusOptions::send_high_water_mark messages for each
// subscriber that does not read (a paused process, a slow link); past that
// ZeroMQ drops that subscriber's messages, and only its own (the others
// receive everything). ZeroMQ does not count these drops. A subscriber that
// must never lose one sets both marks to 0 (unlimited: then a stalled
// subscriber grows the publisher's memory for as long as it publishes).
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "coproc/error.hpp"
#include "coproc/json.hpp"

namespace coproc {

struct BusOptions {
    /// Messages queued per peer (see the top): the publisher's per-subscriber
    /// queue and the subscriber's receive queue. At the send mark the
    /// publisher drops further messages for that subscriber only; at the
    /// receive mark the subscriber stops reading its socket, so the
    /// publisher's queue for it fills. 0 means unlimited.
    int send_high_water_mark = 100'000;
    int receive_high_water_mark = 100'000;
    /// Frames larger than this are dropped by subscribers (and counted).
    std::size_t max_message_size = std::size_t{1} << 20;
    /// How long stop() may wait for queued frames to reach connected subscribers.
    std::chrono::milliseconds linger{5000};
};

/// One or several channel names. One name is kept without a vector (put()
/// on one channel allocates nothing for it).
class Channels {
public:
    Channels(const char* channel) : one_(channel) {}             // NOLINT(google-explicit-constructor)
    Channels(std::string channel) : one_(std::move(channel)) {}  // NOLINT(google-explicit-constructor)
    Channels(std::string_view channel) : one_(channel) {}        // NOLINT(google-explicit-constructor)
    Channels(std::vector<std::string> channels)
        : many_(std::move(channels)), single_(false) {}  // NOLINT(google-explicit-constructor)
    Channels(std::initializer_list<std::string> channels)
        : many_(channels), single_(false) {}  // NOLINT(google-explicit-constructor)
    [[nodiscard]] std::span<const std::string> names() const noexcept {
        if (single_) return {&one_, 1};
        return many_;
    }

private:
    std::string one_;
    std::vector<std::string> many_;
    bool single_ = true;
};

/// A received message and the channel it came on.
struct BusMessage {
    std::string channel;
    Json message;

    BusMessage() = default;
    BusMessage(std::string on_channel, Json value) : channel(std::move(on_channel)), message(std::move(value)) {}
    BusMessage(const BusMessage&) = default;
    BusMessage(BusMessage&&) noexcept = default;
    BusMessage& operator=(const BusMessage&) = default;
    BusMessage& operator=(BusMessage&&) noexcept = default;
    /// Frees `message` leaves first (detail::release_json): nlohmann's own
    /// destructor first moves every container's children onto a heap-allocated
    /// stack, one more allocation than a small message's whole DOM.
    ~BusMessage();

    template <class T>
    [[nodiscard]] T as() const {
        return message.get<T>();
    }
};

/// What a subscriber received, delivered and dropped.
struct SubscriberStats {
    std::uint64_t received = 0;   // frames read from the socket
    std::uint64_t delivered = 0;  // returned by get()
    std::uint64_t dropped_no_space = 0;
    std::uint64_t dropped_bad_utf8 = 0;
    std::uint64_t dropped_bad_json = 0;
    std::uint64_t dropped_oversized = 0;
    [[nodiscard]] std::uint64_t dropped() const noexcept {
        return dropped_no_space + dropped_bad_utf8 + dropped_bad_json + dropped_oversized;
    }
};

namespace detail {
struct PublisherState;   // lib/bus.cpp
struct SubscriberState;  // lib/bus.cpp
}  // namespace detail

/// Sends messages from a background thread. Move-only.
class Publisher {
public:
    Publisher(Publisher&&) noexcept;
    Publisher& operator=(Publisher&&) noexcept;
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;
    /// stop(); never throws.
    ~Publisher();

    /// Binds (or connects, see Bus::publish) and starts the sending thread.
    /// Messages put before start() are sent then. Throws Error if the address
    /// cannot be bound (in use, bad endpoint): an ipc:// path where another
    /// process is bound is in use (ZeroMQ alone would take it over).
    void start();

    /// Queues `message` once per channel and returns at once. Thread-safe.
    /// Throws std::invalid_argument for an empty channel list, a channel
    /// that is empty or contains a space, or an empty message (null, "", {},
    /// []: shellbot's rule, except that 0 and false may be sent); Error after
    /// stop.
    template <class T>
    void put(const Channels& channels, const T& message) {
        if constexpr (std::is_same_v<T, Json>)
            put_json(channels, message);  // no copy
        else
            put_json(channels, Json(message));
    }
    void put_json(const Channels& channels, const Json& message);

    /// Blocks until at least `count` subscriptions reached this publisher
    /// (each subscriber sends one per channel, plus one for wait_ready).
    /// Works with any SUB peer, Python's included. Throws Timeout.
    void wait_for_subscribers(std::size_t count, std::chrono::nanoseconds timeout);

    /// The poison pill: the thread ends after sending what was put before.
    /// Returns at once; later put() calls throw.
    void request_stop();
    /// request_stop(), then waits until everything put before was sent and
    /// flushed to connected subscribers (at most BusOptions::linger).
    void stop();

    /// The endpoint bound or connected after start(): with a wildcard such as
    /// tcp://127.0.0.1:* this tells the port chosen.
    [[nodiscard]] std::string endpoint() const;

    /// Frames handed to ZeroMQ so far.
    [[nodiscard]] std::uint64_t sent() const noexcept;
    [[nodiscard]] bool running() const noexcept;

private:
    friend class Bus;
    explicit Publisher(std::unique_ptr<detail::PublisherState> state);
    std::unique_ptr<detail::PublisherState> state_;
};

/// Receives the channels it subscribed to. Use from one thread. Move-only.
class Subscriber {
public:
    Subscriber(Subscriber&&) noexcept;
    Subscriber& operator=(Subscriber&&) noexcept;
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;
    ~Subscriber();

    /// Never blocks: the next message, or empty when nothing is there.
    [[nodiscard]] std::optional<BusMessage> get();
    /// block = true waits for a message (forever); false is get().
    [[nodiscard]] std::optional<BusMessage> get(bool block);
    /// Waits at most `timeout`; empty if nothing came.
    [[nodiscard]] std::optional<BusMessage> get(std::chrono::nanoseconds timeout);

    /// Blocks until a coproc publisher has confirmed this subscriber's
    /// subscriptions: from then on nothing it publishes to them is lost under
    /// normal load. Messages received meanwhile are kept for get(). Throws
    /// Timeout (e.g. against a plain ZeroMQ PUB, which cannot confirm).
    void wait_ready(std::chrono::nanoseconds timeout);

    /// Bad frames are dropped and counted here; they never throw.
    [[nodiscard]] const SubscriberStats& stats() const noexcept;

private:
    friend class Bus;
    explicit Subscriber(std::unique_ptr<detail::SubscriberState> state);
    std::unique_ptr<detail::SubscriberState> state_;
};

/// A bus address and its options: the factory of publishers and subscribers.
/// Cheap to copy.
class Bus {
public:
    /// Loopback only. See the README ("Crossing machines") before exposing a bus.
    static constexpr std::string_view default_address = "tcp://127.0.0.1:5555";

    /// Any ZeroMQ endpoint (tcp://, ipc://, inproc:// for tests); an empty
    /// address means the default, as shellbot's check() restores it.
    explicit Bus(std::string bus_address = std::string(default_address), BusOptions bus_options = {});

    [[nodiscard]] const std::string& address() const noexcept { return address_; }
    [[nodiscard]] const BusOptions& options() const noexcept { return options_; }

    /// A publisher; it binds the address on start() (bind = false: connects,
    /// for many publishers towards one binding subscriber).
    [[nodiscard]] Publisher publish(bool bind = true) const;
    /// A subscriber to `channels`, connected at once (bind = true: binds, for
    /// publishers that connect). Throws std::invalid_argument for an empty
    /// list or a channel with a space; Error if the endpoint is bad.
    [[nodiscard]] Subscriber subscribe(const Channels& channels, bool bind = false) const;

private:
    std::string address_;
    BusOptions options_;
};

}  // namespace coproc
