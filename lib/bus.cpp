// The bus: publishers (an XPUB socket driven by one thread) and subscribers
// (a SUB socket) over ZeroMQ, with shellbot's wire format.
#include "coproc/bus.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include <pthread.h>

#include <fmt/format.h>
#include <zmq.hpp>

#include "json_text.hpp"
#include "coproc/detail/deadline.hpp"
#include "coproc/detail/unique_fd.hpp"

namespace coproc {
using detail::Clock;
using detail::Deadline;
using detail::deadline_after;
using detail::poll_timeout;
}  // namespace coproc

namespace coproc {
namespace detail {
namespace {

// Subscriptions to this prefix are answered by the publisher with a welcome
// frame: the subscriber's wait_ready handshake. It must reach the publisher
// after every other subscription of the subscriber: a SUB socket that
// connects (or is connected to) after subscribing replays its subscriptions
// in byte order, not in the order they were made. So the prefix starts with
// U+10FFFF, the last code point: it sorts after every UTF-8 channel name, and
// stays valid UTF-8 for a Python peer subscribed to everything (shellbot's
// bus_spy), which sees these frames (channel "\U0010ffffcoproc-ready:...",
// message null). Plain PUB peers never answer it.
constexpr std::string_view ready_prefix =
    "\xf4\x8f\xbf\xbf"
    "coproc-ready:";

void check_channels(const Channels& channels, bool allow_empty_name) {
    if (channels.names().empty()) throw std::invalid_argument("coproc::Bus: the channel list is empty");
    for (const auto& c : channels.names()) {
        if (c.empty() && !allow_empty_name) throw std::invalid_argument("coproc::Bus: empty channel name");
        // A loop, not find(): names are short, and memchr's setup costs more
        // than the scan.
        if (std::any_of(c.begin(), c.end(), [](char ch) { return ch == ' '; }))
            throw std::invalid_argument("coproc::Bus: channel names cannot contain a space: '" + c + "'");
    }
}

// The process's ZeroMQ context (subscribers and inproc publishers). A child
// forked from us gets a fresh one: ZeroMQ contexts do not survive fork.
std::shared_ptr<zmq::context_t> process_context() {
    static std::mutex mutex;
    static std::shared_ptr<zmq::context_t>* context = nullptr;
    static pid_t owner = 0;
    const std::lock_guard lock(mutex);
    if (context == nullptr || owner != ::getpid()) {
        // The inherited context is leaked on purpose: terminating it in the
        // child would touch the parent's I/O threads, which do not exist here.
        context = new std::shared_ptr<zmq::context_t>(std::make_shared<zmq::context_t>());
        owner = ::getpid();
    }
    return *context;
}

// Guards the hand-over between put() and the publisher's thread, whose
// critical sections are an append of one frame or a swap of two buffers.
// Unlocking is a plain store: std::mutex's unlock is a second locked
// instruction, which costs as much as the append. A waiter spins a
// little, then yields the CPU, so a holder that lost its CPU gets it back.
// Not for long critical sections, nor for waiting on a condition.
class SpinLock {
public:
    void lock() noexcept {
        int spins = 0;
        while (locked_.exchange(true, std::memory_order_acquire)) {
            while (locked_.load(std::memory_order_relaxed)) {
                if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
                    __builtin_ia32_pause();
#endif
                } else {
                    std::this_thread::yield();
                }
            }
        }
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> locked_{false};
};

[[noreturn]] void rethrow_zmq(const zmq::error_t& e, const std::string& what) {
    throw Error(fmt::format("coproc::Bus: {}: {}", what, e.what()));
}

// ZeroMQ binds an ipc:// path by deleting whatever file is there, so a second
// binder would silently take the address over from a live one. Refuse when
// something accepts connections on the path; a stale file (nothing listens)
// is fine to replace. Abstract (ipc://@name) and wildcard addresses are left
// to the kernel and ZeroMQ, which refuse a taken name themselves.
void check_ipc_address_free(const std::string& address) {
    constexpr std::string_view scheme = "ipc://";
    if (address.rfind(scheme, 0) != 0) return;
    const std::string path = address.substr(scheme.size());
    if (path.empty() || path[0] == '@' || path == "*") return;
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) return;  // ZeroMQ reports it
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    const UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) return;
    if (retry_eintr(::connect, probe.get(), reinterpret_cast<const sockaddr*>(&addr),
                    static_cast<socklen_t>(sizeof(addr))) == 0)
        throw Error(fmt::format("coproc::Bus: cannot bind {}: address already in use (another process is bound there)",
                                address));
}

}  // namespace

// ------------------------------------------------------------------ publisher

struct PublisherState {
    std::string address;
    BusOptions options;
    bool bind = true;
    std::shared_ptr<zmq::context_t> context;  // own context (tcp/ipc) so stop() can flush by terminating it
    std::optional<zmq::socket_t> socket;

    // Guards `subscriptions`; `changed` tells of new ones and of the end.
    std::mutex mutex;
    std::condition_variable changed;
    std::size_t subscriptions = 0;

    // Guards `wake` (set once by start()), `queue` and `stop_requested`.
    SpinLock queue_lock;
    UniqueFd wake;  // eventfd: put() wakes the thread
    // Frames put and not yet taken by the thread, back to back in one buffer
    // (no allocation per message once the buffers have grown).
    struct Frames {
        std::string bytes;
        std::vector<std::size_t> lengths;
        void clear() noexcept {
            bytes.clear();
            lengths.clear();
        }
        void swap(Frames& other) noexcept {
            bytes.swap(other.bytes);
            lengths.swap(other.lengths);
        }
    };
    Frames queue;
    bool stop_requested = false;
    std::atomic<std::uint64_t> sent{0};
    std::atomic<bool> running{false};
    std::thread thread;
    std::string endpoint;

    void notify() {
        const std::uint64_t one = 1;
        (void)!::write(wake.get(), &one, sizeof one);
    }

    void run() {
        (void)::pthread_setname_np(::pthread_self(), "coproc-bus-pub");  // for top, perf, gdb
        auto& sock = *socket;
        Frames batch;
        bool done = false;
        while (!done) {
            zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake.get(), ZMQ_POLLIN, 0}};
            try {
                zmq::poll(items, 2, std::chrono::milliseconds(-1));
            } catch (const zmq::error_t& e) {
                if (e.num() == EINTR) continue;
                break;
            }
            if ((items[0].revents & ZMQ_POLLIN) != 0) handle_subscriptions(sock);
            if ((items[1].revents & ZMQ_POLLIN) != 0) {
                std::uint64_t n;
                (void)!::read(wake.get(), &n, sizeof n);
            }
            // Take the whole queue; the two vectors trade places and keep
            // their capacity, so a steady stream allocates nothing here.
            bool stop_now = false;
            {
                const std::lock_guard lock(queue_lock);
                batch.swap(queue);
                // The pill: request_stop() was called, and put() refuses
                // since, so this batch ends with the last frame put before it.
                stop_now = stop_requested;
            }
            // `sent` is counted once per batch: an atomic add per frame
            // would pull its cache line away from put() every time.
            void* const handle = sock.handle();
            std::size_t at = 0;
            std::uint64_t sent_now = 0;
            for (const std::size_t length : batch.lengths) {
                // A frame ZeroMQ refuses is dropped; the loop goes on (as shellbot's).
                if (::zmq_send(handle, batch.bytes.data() + at, length, 0) >= 0) ++sent_now;
                at += length;
            }
            sent.fetch_add(sent_now, std::memory_order_relaxed);
            batch.clear();
            // A burst of big messages should not pin its memory for good.
            if (batch.bytes.capacity() > (std::size_t{4} << 20)) batch = Frames{};
            done = stop_now;
        }
        socket.reset();  // close: linger lets ZeroMQ flush; stop() waits for it
        running = false;
        changed.notify_all();
    }

    // XPUB delivers subscription messages: byte 1 = subscribe, then the topic.
    void handle_subscriptions(zmq::socket_t& sock) {
        zmq::message_t msg;
        while (sock.recv(msg, zmq::recv_flags::dontwait)) {
            const auto data = msg.to_string_view();
            if (data.empty() || data[0] != 1) continue;
            const auto topic = data.substr(1);
            if (topic.substr(0, ready_prefix.size()) == ready_prefix) {
                // Answer the handshake; the subscriber's earlier subscriptions
                // on this connection were processed before this one.
                std::string welcome(topic);
                welcome += "null";
                try {
                    sock.send(zmq::buffer(welcome), zmq::send_flags::none);
                } catch (const zmq::error_t&) {
                }
            }
            {
                const std::lock_guard lock(mutex);
                ++subscriptions;
            }
            changed.notify_all();
        }
    }
};

}  // namespace detail

Publisher::Publisher(std::unique_ptr<detail::PublisherState> state) : state_(std::move(state)) {}
Publisher::Publisher(Publisher&&) noexcept = default;
Publisher& Publisher::operator=(Publisher&& other) noexcept {
    if (this != &other) {
        stop();
        state_ = std::move(other.state_);
    }
    return *this;
}
Publisher::~Publisher() {
    try {
        stop();
    } catch (...) {
        // destructors never throw
    }
}

void Publisher::start() {
    auto& s = *state_;
    if (s.running || s.thread.joinable()) return;
    const bool inproc = s.address.rfind("inproc://", 0) == 0;
    s.context = inproc ? detail::process_context() : std::make_shared<zmq::context_t>(1);
    try {
        zmq::socket_t sock(*s.context, zmq::socket_type::xpub);
        sock.set(zmq::sockopt::xpub_verbose, 1);
        sock.set(zmq::sockopt::sndhwm, s.options.send_high_water_mark);
        // Subscriptions arrive through the receive pipe: never drop one.
        sock.set(zmq::sockopt::rcvhwm, 0);
        sock.set(zmq::sockopt::linger, static_cast<int>(s.options.linger.count()));
        if (s.bind) {
            detail::check_ipc_address_free(s.address);
            sock.bind(s.address);
        } else {
            sock.connect(s.address);
        }
        s.endpoint = s.bind ? sock.get(zmq::sockopt::last_endpoint) : s.address;
        s.socket.emplace(std::move(sock));
    } catch (const zmq::error_t& e) {
        detail::rethrow_zmq(e, (s.bind ? "cannot bind " : "cannot connect to ") + s.address);
    }
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) detail::throw_system_error(errno, "eventfd");
    {
        // put() and request_stop() may run in other threads: they look at the
        // wake-up fd under the lock only.
        const std::lock_guard lock(s.queue_lock);
        s.wake.reset(fd);
    }
    s.running = true;
    s.thread = std::thread([&s] { s.run(); });  // the socket moves to this thread (thread start is a full barrier)
    s.notify();                                 // send what was put before start()
}

void Publisher::put_json(const Channels& channels, const Json& message) {
    detail::check_channels(channels, false);
    if (message.is_null() || (message.is_string() && message.get_ref<const std::string&>().empty()) ||
        ((message.is_object() || message.is_array()) && message.empty()))
        throw std::invalid_argument("coproc::Bus: empty message");
    // Serialised once, outside the lock, into this thread's reused buffer.
    // initial-exec: a %fs-relative access instead of a __tls_get_addr call,
    // a sizeable part of a small put(); libcoproc's static TLS is this string.
    [[gnu::tls_model("initial-exec")]] thread_local std::string text;
    text.clear();
    detail::append_python_json(text, message);
    auto& s = *state_;
    bool wake_thread = false;
    {
        const std::lock_guard lock(s.queue_lock);
        if (s.stop_requested) throw Error("coproc::Bus: put() after the publisher was stopped");
        // The thread takes the whole queue at each wake-up: only the put that
        // finds it empty needs to wake it (one write per burst, not per
        // message); before start() there is no thread yet, start() wakes it.
        wake_thread = s.queue.lengths.empty() && s.wake;
        for (const auto& channel : channels.names()) {
            s.queue.bytes += channel;
            s.queue.bytes += ' ';
            s.queue.bytes += text;
            s.queue.lengths.push_back(channel.size() + 1 + text.size());
        }
    }
    if (wake_thread) s.notify();
    if (text.capacity() > (std::size_t{1} << 20)) std::string().swap(text);  // do not keep a huge one
}

void Publisher::wait_for_subscribers(std::size_t count, std::chrono::nanoseconds timeout) {
    auto& s = *state_;
    std::unique_lock lock(s.mutex);
    if (!s.changed.wait_for(lock, timeout, [&] { return s.subscriptions >= count; }))
        throw Timeout(fmt::format("coproc::Bus: {} of {} subscriptions within the timeout", s.subscriptions, count));
}

void Publisher::request_stop() {
    if (!state_) return;
    auto& s = *state_;
    bool wake_thread = false;
    {
        const std::lock_guard lock(s.queue_lock);
        if (s.stop_requested) return;
        s.stop_requested = true;
        wake_thread = static_cast<bool>(s.wake);
    }
    if (wake_thread) s.notify();
}

void Publisher::stop() {
    if (!state_) return;
    request_stop();
    auto& s = *state_;
    if (s.thread.joinable()) s.thread.join();
    // Terminating our own context waits (up to linger) until ZeroMQ has
    // written every queued frame to the connected subscribers.
    if (s.context && s.context.use_count() == 1 && s.address.rfind("inproc://", 0) != 0) s.context->close();
    s.context.reset();
}

std::string Publisher::endpoint() const { return state_ ? state_->endpoint : std::string(); }
std::uint64_t Publisher::sent() const noexcept { return state_ ? state_->sent.load() : 0; }
bool Publisher::running() const noexcept { return state_ && state_->running.load(); }

// ------------------------------------------------------------------ subscriber

namespace detail {
struct SubscriberState {
    BusOptions options;
    std::shared_ptr<zmq::context_t> context;
    std::optional<zmq::socket_t> socket;
    std::string ready_topic;  // our private handshake topic
    bool ready = false;
    std::deque<BusMessage> stash;  // received while waiting for readiness
    SubscriberStats stats;

    // Reads one frame (waiting up to `timeout_ms`, -1 forever, 0 not at all).
    // Returns true with a message to deliver in `out` (which is empty on
    // entry), or false: nothing came, or the frame was dropped. The message
    // is built in the caller's optional: a small message's whole life is
    // cheaper than moving a BusMessage out through two returns.
    bool read_one(int timeout_ms, bool& got_frame, std::optional<BusMessage>& out) {
        got_frame = false;
        auto& sock = *socket;
        zmq::message_t msg;
        // Try first: poll only when nothing is waiting.
        if (!sock.recv(msg, zmq::recv_flags::dontwait)) {
            if (timeout_ms == 0) return false;
            zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
            try {
                if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return false;
            } catch (const zmq::error_t& e) {
                if (e.num() == EINTR) return false;
                throw;
            }
            if (!sock.recv(msg, zmq::recv_flags::dontwait)) return false;
        }
        got_frame = true;
        const bool multipart = msg.more();
        if (multipart) {
            while (msg.more()) (void)sock.recv(msg, zmq::recv_flags::dontwait);  // not ours: drain the parts
        }
        const std::string_view frame(static_cast<const char*>(msg.data()), msg.size());
        if (frame.substr(0, ready_prefix.size()) == ready_prefix) {
            if (frame.substr(0, ready_topic.size()) == ready_topic) ready = true;
            return false;  // a handshake frame, never delivered
        }
        ++stats.received;
        if (msg.size() > options.max_message_size) {
            ++stats.dropped_oversized;
            return false;
        }
        if (multipart) {
            ++stats.dropped_no_space;
            return false;
        }
        // A loop, not find(): the space ends a short channel name, and
        // memchr's setup costs more than the scan.
        std::size_t space = 0;
        while (space < frame.size() && frame[space] != ' ') ++space;
        if (space == frame.size()) {
            ++stats.dropped_no_space;
            return false;
        }
        // The JSON parser checks the UTF-8 of the text; the channel is checked here.
        const std::string_view channel = frame.substr(0, space);
        const std::string_view text = frame.substr(space + 1);
        if (!valid_utf8(channel)) {
            ++stats.dropped_bad_utf8;
            return false;
        }
        BusMessage& message = out.emplace();
        if (!parse_json(text, message.message)) {
            out.reset();
            if (!valid_utf8(text))
                ++stats.dropped_bad_utf8;
            else
                ++stats.dropped_bad_json;
            return false;
        }
        message.channel.assign(channel);
        ++stats.delivered;
        return true;
    }

    // The next message into `out` (empty on entry): waits at most `timeout`
    // (Clock::duration::max(): forever; a duration, not an optional, which
    // the caller would build with a byte store the call then reads back as
    // a word: a store-forwarding stall); `out` stays empty if nothing came.
    void next(Clock::duration timeout, std::optional<BusMessage>& out) {
        if (!stash.empty()) {
            out.emplace(std::move(stash.front()));
            stash.pop_front();
            return;
        }
        // Frames already there are read without a clock read: a subscriber
        // that keeps up with a stream rarely waits, and a clock read (a
        // system call under some hypervisors' clocks) costs as much as
        // parsing a small message.
        bool got_frame = true;
        while (got_frame) {
            if (read_one(0, got_frame, out)) return;
        }
        if (timeout <= Clock::duration::zero()) return;
        const Deadline deadline = deadline_after(timeout);  // none for max(): forever
        for (;;) {
            const int timeout_ms = poll_timeout(deadline);
            if (read_one(timeout_ms, got_frame, out)) return;
            if (!got_frame && deadline && Clock::now() >= *deadline) return;
            if (!got_frame && timeout_ms == 0) return;
        }
    }
};

}  // namespace detail

BusMessage::~BusMessage() { detail::release_json(message); }

Subscriber::Subscriber(std::unique_ptr<detail::SubscriberState> state) : state_(std::move(state)) {}
Subscriber::Subscriber(Subscriber&&) noexcept = default;
Subscriber& Subscriber::operator=(Subscriber&&) noexcept = default;
Subscriber::~Subscriber() = default;

std::optional<BusMessage> Subscriber::get() {
    std::optional<BusMessage> message;  // returned without a move (NRVO)
    state_->next(Clock::duration::zero(), message);
    return message;
}
std::optional<BusMessage> Subscriber::get(bool block) {
    std::optional<BusMessage> message;  // one return statement: NRVO
    state_->next(block ? Clock::duration::max() : Clock::duration::zero(), message);
    return message;
}
std::optional<BusMessage> Subscriber::get(std::chrono::nanoseconds timeout) {
    std::optional<BusMessage> message;
    state_->next(std::chrono::duration_cast<Clock::duration>(timeout), message);
    return message;
}

void Subscriber::wait_ready(std::chrono::nanoseconds timeout) {
    auto& s = *state_;
    const Deadline deadline = deadline_after(timeout);
    while (!s.ready) {
        const int timeout_ms = poll_timeout(deadline);  // -1 for a timeout too long to have a deadline
        if (timeout_ms == 0) throw Timeout("coproc::Bus: no publisher confirmed the subscription");
        bool got_frame = false;
        std::optional<BusMessage> message;
        if (s.read_one(timeout_ms, got_frame, message)) s.stash.push_back(std::move(*message));
    }
}

const SubscriberStats& Subscriber::stats() const noexcept { return state_->stats; }

// ------------------------------------------------------------------ bus

Bus::Bus(std::string address, BusOptions options)
    : address_(address.empty() ? std::string(default_address) : std::move(address)), options_(options) {}

Publisher Bus::publish(bool bind) const {
    auto state = std::make_unique<detail::PublisherState>();
    state->address = address_;
    state->options = options_;
    state->bind = bind;
    return Publisher(std::move(state));
}

Subscriber Bus::subscribe(const Channels& channels, bool bind) const {
    detail::check_channels(channels, true);
    auto state = std::make_unique<detail::SubscriberState>();
    state->options = options_;
    state->context = detail::process_context();
    static std::atomic<std::uint64_t> counter{0};
    std::random_device rd;
    state->ready_topic = fmt::format("{}{:x}-{:x}-{} ", detail::ready_prefix, rd(), ::getpid(), counter.fetch_add(1));
    try {
        zmq::socket_t sock(*state->context, zmq::socket_type::sub);
        sock.set(zmq::sockopt::rcvhwm, options_.receive_high_water_mark);
        // The subscriptions travel out through the send pipe: a subscriber
        // to thousands of channels must not lose any of them.
        sock.set(zmq::sockopt::sndhwm, 0);
        sock.set(zmq::sockopt::linger, 0);
        // Exact matching on the same wire: "a " is a prefix of "a {...}" but not of "ab {...}".
        for (const auto& channel : channels.names())
            sock.set(zmq::sockopt::subscribe, channel.empty() ? std::string() : channel + ' ');
        sock.set(zmq::sockopt::subscribe, state->ready_topic);  // last: confirms all the above
        if (bind) {
            detail::check_ipc_address_free(address_);
            sock.bind(address_);
        } else {
            sock.connect(address_);
        }
        state->socket.emplace(std::move(sock));
    } catch (const zmq::error_t& e) {
        detail::rethrow_zmq(e, (bind ? "cannot bind " : "cannot connect to ") + address_);
    }
    return Subscriber(std::move(state));
}

}  // namespace coproc
