// coproc/messenger.hpp — MultiMessenger<Msg> and PriorityMessenger<Msg>: typed,
// channelled request/reply messaging over one AF_UNIX stream socket.
//
//   auto [worker, host] = coproc::PriorityMessenger<Job>::new_pair();  // no process needed
//   host.send_request(Job{0, "urgent"}, "jobs");
//   Job j = worker.receive_blocking("jobs", 1s);     // throws Timeout after 1 s
//   worker.send_reply(j, "jobs");
//   for (Job& r : host.receive_remaining("jobs")) {} // until no request is outstanding
//
// Semantics (Python coproc's, with its weaknesses fixed; see README):
// - Every receive call first moves everything readable into per-channel
//   queues; error and close frames are raised by the call that parses them,
//   after the frames before them were queued; frames after them stay buffered.
// - Counters: requests/sent count after a successful send; received/replies
//   count when a message is popped. remaining(ch) = requests - replies.
// - Peer gone: data it sent before stays receivable; a call that needs more
//   raises ChannelClosed (WorkerDied on a WorkerResource's host side). A send
//   to a dead peer raises the same, never SIGPIPE.
// - Timed forms take a std::chrono duration and throw Timeout when it passes.
//
// Thread-safety: none. Use a messenger from one thread at a time (a pair made
// by new_pair may be split between two threads, one end each).
// Both sides may call everything.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "coproc/blob.hpp"
#include "coproc/channel.hpp"
#include "coproc/codec.hpp"
#include "coproc/data_message.hpp"
#include "coproc/detail/frame.hpp"
#include "coproc/detail/link.hpp"
#include "coproc/detail/pull_iterator.hpp"
#include "coproc/error.hpp"
#include "coproc/messenger_options.hpp"
#include "coproc/priority.hpp"
#include "coproc/queue.hpp"
#include "coproc/request_ctr.hpp"
#include "coproc/unique_fd.hpp"

namespace coproc {

namespace detail {
/// A received data frame, queued undecoded until popped.
struct QueuedFrame {
    // User-provided, so a queue's in-place construction does not zero-fill
    // the whole frame (the members below are initialised anyway).
    QueuedFrame() noexcept {}  // NOLINT(modernize-use-equals-default)
    Bytes bytes;               // the payload (large frames: channel name, then payload)
    std::uint32_t offset = 0;  // where the payload starts in `bytes`
    bool request_reply = false;
    bool is_reply = false;
    [[nodiscard]] std::string_view payload() const noexcept { return bytes.view().substr(offset); }
};
}  // namespace detail

template <class Msg, template <class> class Queue>
class BasicMessenger {
public:
    using message_type = Msg;
    using queue_type = Queue<detail::QueuedFrame>;
    using Duration = std::chrono::nanoseconds;

    /// The two ends of a connected pair. Named members, so the order cannot be
    /// swapped by accident (Python's new_pair returns a bare tuple).
    struct Pair {
        BasicMessenger worker;
        BasicMessenger host;
    };

    /// A connected pair in this process (for tests and for threads). Throws SystemError.
    [[nodiscard]] static Pair new_pair(MessengerOptions messenger_options = {}) {
        auto ends = detail::make_link_pair();
        detail::share_arrival_flags(ends);  // both ends stay in this process
        return Pair{BasicMessenger(std::move(ends.first), messenger_options),
                    BasicMessenger(std::move(ends.second), messenger_options)};
    }

    /// Takes one end of a link (detail::make_link_pair) and sends the startup
    /// hello frame. Used by WorkerResource; rarely needed directly.
    explicit BasicMessenger(detail::LinkEnd end, MessengerOptions messenger_options = {})
        : link_(std::move(end.stream), std::move(end.side), detail::type_fingerprint<Msg>,
                messenger_options.max_frame_size,
                {messenger_options.shared_memory_threshold, messenger_options.shared_memory_limit},
                std::move(end.arrivals), typeid(Msg).name()) {}
    /// A connected stream socket you made (AF_UNIX socketpair, an accepted
    /// connection; the messenger owns it now): the same, without the
    /// shared-memory path (large payloads go through the socket; so must the
    /// peer's). The peer must be a coproc messenger of the same Msg.
    explicit BasicMessenger(UniqueFd fd, MessengerOptions messenger_options = {})
        : BasicMessenger(detail::LinkEnd{std::move(fd), {}}, messenger_options) {}

    BasicMessenger(BasicMessenger&&) noexcept = default;
    BasicMessenger& operator=(BasicMessenger&& other) noexcept {
        if (this != &other) {
            // Queued payloads may borrow our link's shared memory: they go first.
            queue_ = std::move(other.queue_);
            link_ = std::move(other.link_);
            ctr_ = std::move(other.ctr_);
        }
        return *this;
    }
    BasicMessenger(const BasicMessenger&) = delete;
    BasicMessenger& operator=(const BasicMessenger&) = delete;
    ~BasicMessenger() = default;

    // ---- sending. Blocks only while the socket buffer is full (back-pressure).
    // Throws ChannelClosed/WorkerDied if the peer is gone, ProtocolError if the
    // message exceeds the maximum frame size, Timeout (timed forms) if the
    // deadline passed: then nothing was sent, unless the message says the frame
    // was begun, in which case it is completed by the next send and counted.

    /// A message that expects no reply.
    void send_norequest(const Msg& message, const Channel& channel = {}) {
        send_data(detail::FrameKind::data, message, channel, std::nullopt);
    }
    void send_norequest(const Msg& message, const Channel& channel, Duration timeout) {
        send_data(detail::FrameKind::data, message, channel, detail::deadline_after(timeout));
    }
    /// A request: remaining(channel) grows by one until a reply is popped.
    void send_request(const Msg& message, const Channel& channel = {}) {
        send_data(detail::FrameKind::request, message, channel, std::nullopt);
    }
    void send_request(const Msg& message, const Channel& channel, Duration timeout) {
        send_data(detail::FrameKind::request, message, channel, detail::deadline_after(timeout));
    }
    /// A reply: lowers the peer's remaining(channel) when the peer pops it.
    void send_reply(const Msg& message, const Channel& channel = {}) {
        send_data(detail::FrameKind::reply, message, channel, std::nullopt);
    }
    void send_reply(const Msg& message, const Channel& channel, Duration timeout) {
        send_data(detail::FrameKind::reply, message, channel, detail::deadline_after(timeout));
    }
    /// Python's common path of the three above: request_reply makes it a
    /// request, is_reply a reply, neither a plain message. Both at once
    /// throws std::invalid_argument (the wire has no such message).
    void send_data_message(const Msg& payload, bool request_reply, bool is_reply, const Channel& channel = {}) {
        send_data(data_kind(request_reply, is_reply), payload, channel, std::nullopt);
    }
    void send_data_message(const Msg& payload, bool request_reply, bool is_reply, const Channel& channel,
                           Duration timeout) {
        send_data(data_kind(request_reply, is_reply), payload, channel, detail::deadline_after(timeout));
    }
    /// One request per element, written with one system call (batch API).
    template <class Range>
    void send_request_multiple(const Range& messages, const Channel& channel = {}) {
        send_batch(detail::FrameKind::request, messages, channel, std::nullopt);
    }
    template <class Range>
    void send_request_multiple(const Range& messages, const Channel& channel, Duration timeout) {
        send_batch(detail::FrameKind::request, messages, channel, detail::deadline_after(timeout));
    }
    /// One norequest message per element, written with one system call.
    template <class Range>
    void send_norequest_multiple(const Range& messages, const Channel& channel = {}) {
        send_batch(detail::FrameKind::data, messages, channel, std::nullopt);
    }
    template <class Range>
    void send_norequest_multiple(const Range& messages, const Channel& channel, Duration timeout) {
        send_batch(detail::FrameKind::data, messages, channel, detail::deadline_after(timeout));
    }

    /// Asks the peer to close: its next receive call raises ResourceRequestedClose.
    void send_close_request() { send_control(detail::FrameKind::close, {}, std::nullopt); }
    void send_close_request(Duration timeout) {
        send_control(detail::FrameKind::close, {}, detail::deadline_after(timeout));
    }
    /// As send_close_request(timeout), but if the peer has already closed its
    /// end (a worker that returned and is exiting), returns false instead of
    /// throwing. Throws Timeout.
    bool try_send_close_request(Duration timeout) {
        const auto outcome = link_.send_control(detail::FrameKind::close, {}, detail::deadline_after(timeout));
        if (outcome == detail::SendOutcome::peer_closed) return false;
        finish_send(outcome, Channel{}, false, 0);
        return true;
    }

    /// Sends an exception (dynamic type name and what()); the peer's next
    /// receive call rethrows it (see error.hpp for which types keep their type).
    void send_error(const std::exception& e) {
        send_control(detail::FrameKind::error, detail::encode_error(detail::demangle(typeid(e)), e.what()),
                     std::nullopt);
    }
    /// Sends the exception held by `error` (non-std exceptions as "unknown exception").
    void send_error(std::exception_ptr error) {
        try {
            std::rethrow_exception(std::move(error));
        } catch (const std::exception& e) {
            send_error(e);
        } catch (...) {
            send_control(detail::FrameKind::error, detail::encode_error("unknown exception", "non-standard exception"),
                         std::nullopt);
        }
    }

    // ---- receiving. Each call first drains the socket (see the top).

    /// Never blocks. Number of messages queued on `channel` after draining.
    [[nodiscard]] std::size_t available(const Channel& channel = {}) {
        drain_if_new();
        return queue_.size(channel);
    }
    /// Blocks until at least one new message arrived (on any channel), like
    /// Python's; messages already queued do not count.
    void await_available() { await_available_until(std::nullopt); }
    void await_available(Duration timeout) { await_available_until(detail::deadline_after(timeout)); }

    /// Never blocks. Every message queued on `channel` after one drain, in
    /// queue order (none is lost if a control frame is raised: it is raised
    /// before the first pop).
    [[nodiscard]] std::vector<Msg> receive_available(const Channel& channel = {}) {
        drain_if_new();
        return take_available<Msg>(channel);
    }

    /// Blocks until at least one message is queued on `channel`, then
    /// returns every message queued there, like receive_blocking followed by
    /// receive_available in one call. A consumer loop built on it makes one
    /// system call per wake-up (await_available + receive_available make two:
    /// the second call must look at the socket again). Throws what
    /// receive_blocking throws: WorkerDied / ChannelClosed when the peer is
    /// gone and nothing is queued, Timeout (timed forms), control frames.
    [[nodiscard]] std::vector<Msg> receive_available_blocking(const Channel& channel = {}) {
        wait_queued(channel, std::nullopt);
        return take_available<Msg>(channel);
    }
    [[nodiscard]] std::vector<Msg> receive_available_blocking(const Channel& channel, Duration timeout) {
        wait_queued(channel, detail::deadline_after(timeout));
        return take_available<Msg>(channel);
    }
    [[nodiscard]] std::vector<Msg> receive_available_blocking(Duration timeout) {
        return receive_available_blocking(Channel{}, timeout);
    }

private:
    // Pops every message queued on `channel` (no drain), as payloads (Item =
    // Msg) or with their flags (Item = DataMessage<Msg>).
    template <class Item>
    std::vector<Item> take_available(const Channel& channel) {
        std::vector<Item> out;
        const std::size_t n = queue_.size(channel);
        out.reserve(n);
        // One queue lookup and one counter update for the whole batch (a
        // frame that does not decode is consumed, not counted, as in pop_from_queue).
        struct CountOnExit {
            RequestCtr& ctr;
            const Channel& channel;
            std::uint64_t taken = 0, replies = 0;
            ~CountOnExit() { ctr.count_received(channel, taken, replies); }
        } count{ctr_, channel};
        queue_.consume(channel, n, [&](detail::QueuedFrame& frame) {
            take_item(frame, channel, out.emplace_back());  // decoded in place: no copy out
            ++count.taken;
            count.replies += frame.is_reply ? 1 : 0;
        });
        return out;
    }

public:
    /// Blocks until a message is queued on `channel` and pops it.
    [[nodiscard]] Msg receive_blocking(const Channel& channel = {}) { return receive_until(channel, std::nullopt); }
    [[nodiscard]] Msg receive_blocking(const Channel& channel, Duration timeout) {
        return receive_until(channel, detail::deadline_after(timeout));
    }
    [[nodiscard]] Msg receive_blocking(Duration timeout) { return receive_blocking(Channel{}, timeout); }

    /// Never blocks: pops the next message on `channel` if one is there.
    [[nodiscard]] std::optional<Msg> try_receive(const Channel& channel = {}) {
        drain_if_new();
        if (queue_.empty(channel)) return std::nullopt;
        return pop_from_queue(channel);
    }

    template <class Item>
    class BasicRemainingRange;
    using RemainingRange = BasicRemainingRange<Msg>;
    using RemainingMessagesRange = BasicRemainingRange<DataMessage<Msg>>;
    /// Lazy input range: each step blocks for the next message on `channel`
    /// (replies and any other data on it, as in Python) while remaining(channel) > 0.
    [[nodiscard]] RemainingRange receive_remaining(const Channel& channel = {}) {
        return {*this, channel, std::nullopt};
    }
    /// Same; each step throws Timeout if its message takes longer than `timeout`.
    [[nodiscard]] RemainingRange receive_remaining(const Channel& channel, Duration timeout) {
        return {*this, channel, timeout};
    }

    /// No I/O. Pops and decodes the next queued message of `channel`.
    /// Throws std::out_of_range if none is queued, ProtocolError if it does not decode.
    [[nodiscard]] Msg pop_from_queue(const Channel& channel = {}) { return pop_item<Msg>(channel); }

    // ---- the message level (Python's *_message calls): each hands out a
    // DataMessage, the payload with its request/reply flags and channel, and
    // otherwise behaves exactly as the payload call of the same name.

    /// As receive_blocking. Throws the same.
    [[nodiscard]] DataMessage<Msg> receive_message_blocking(const Channel& channel = {}) {
        wait_queued(channel, std::nullopt);
        return pop_item<DataMessage<Msg>>(channel);
    }
    [[nodiscard]] DataMessage<Msg> receive_message_blocking(const Channel& channel, Duration timeout) {
        wait_queued(channel, detail::deadline_after(timeout));
        return pop_item<DataMessage<Msg>>(channel);
    }
    [[nodiscard]] DataMessage<Msg> receive_message_blocking(Duration timeout) {
        return receive_message_blocking(Channel{}, timeout);
    }
    /// As receive_available: never blocks.
    [[nodiscard]] std::vector<DataMessage<Msg>> receive_available_messages(const Channel& channel = {}) {
        drain_if_new();
        return take_available<DataMessage<Msg>>(channel);
    }
    /// As try_receive: never blocks.
    [[nodiscard]] std::optional<DataMessage<Msg>> try_receive_message(const Channel& channel = {}) {
        drain_if_new();
        if (queue_.empty(channel)) return std::nullopt;
        return pop_item<DataMessage<Msg>>(channel);
    }
    /// As receive_remaining: a lazy range while remaining(channel) > 0.
    [[nodiscard]] RemainingMessagesRange receive_remaining_messages(const Channel& channel = {}) {
        return {*this, channel, std::nullopt};
    }
    [[nodiscard]] RemainingMessagesRange receive_remaining_messages(const Channel& channel, Duration timeout) {
        return {*this, channel, timeout};
    }
    /// As pop_from_queue: no I/O; throws std::out_of_range if none is queued.
    [[nodiscard]] DataMessage<Msg> pop_message_from_queue(const Channel& channel = {}) {
        return pop_item<DataMessage<Msg>>(channel);
    }
    /// Python's pipe_poll(): never blocks; true if a receive call would read
    /// something now (a frame is buffered or the socket is readable, which
    /// includes end of file). Queued messages do not count.
    [[nodiscard]] bool pipe_poll() { return link_.readable_now(); }

private:
    // Pops the next queued message of `channel` as Item (Msg or DataMessage<Msg>).
    template <class Item>
    Item pop_item(const Channel& channel) {
        detail::QueuedFrame& frame = queue_.front(channel);
        // The frame is consumed even if it does not decode (ProtocolError).
        struct PopOnExit {
            queue_type& queue;
            const Channel& channel;
            ~PopOnExit() { queue.pop(channel); }
        } pop_on_exit{queue_, channel};
        Item item{};
        take_item(frame, channel, item);
        ctr_.count_received(channel, frame.is_reply);
        return item;
    }

    static detail::FrameKind data_kind(bool request_reply, bool is_reply) {
        if (request_reply && is_reply)
            throw std::invalid_argument("coproc: send_data_message: a message cannot be both a request and a reply");
        if (request_reply) return detail::FrameKind::request;
        return is_reply ? detail::FrameKind::reply : detail::FrameKind::data;
    }

public:
    // ---- inspection, no I/O.
    [[nodiscard]] std::int64_t remaining(const Channel& channel = {}) const { return ctr_.remaining(channel); }
    [[nodiscard]] std::uint64_t requests_sent(const Channel& channel = {}) const { return ctr_.requests(channel); }
    [[nodiscard]] std::uint64_t replies_received(const Channel& channel = {}) const { return ctr_.replies(channel); }
    [[nodiscard]] std::uint64_t messages_sent(const Channel& channel = {}) const { return ctr_.sent(channel); }
    [[nodiscard]] std::uint64_t messages_received(const Channel& channel = {}) const { return ctr_.received(channel); }
    [[nodiscard]] std::size_t queue_size(const Channel& channel = {}) const { return queue_.size(channel); }
    [[nodiscard]] const RequestCtr& request_ctr() const noexcept { return ctr_; }
    [[nodiscard]] const queue_type& queue() const noexcept { return queue_; }
    [[nodiscard]] int fd() const noexcept { return link_.fd(); }

    /// Internal: the untyped stream end (WorkerResource uses it).
    [[nodiscard]] detail::Link& link() noexcept { return link_; }

private:
    // Decodes a queued frame into `out`, default-constructed, with its flags.
    void take_item(detail::QueuedFrame& frame, const Channel& channel, DataMessage<Msg>& out) {
        take_item(frame, channel, out.payload);
        out.request_reply = frame.request_reply;
        out.is_reply = frame.is_reply;
        out.channel = channel;
    }
    // Decodes a queued frame into `out`, a default-constructed message (a
    // Blob adopts the frame's bytes instead); the caller pops the frame.
    void take_item(detail::QueuedFrame& frame, const Channel& /*channel*/, Msg& out) {
        if constexpr (std::is_same_v<Msg, Blob>) {
            // The payload stays where it is (shared memory or its read buffer).
            out = detail::adopt_blob(std::move(frame.bytes), frame.offset);
        } else {
            detail::decode_into(out, frame.payload());
            if (frame.bytes.heap_capacity() > detail::direct_read_threshold) link_.recycle(std::move(frame.bytes));
        }
    }

    // The queue as the link's drain() fills it.
    class Enqueue final : public detail::FrameSink {
    public:
        explicit Enqueue(queue_type& queue) noexcept : queue_(queue) {}
        void on_frame(const detail::FrameView& frame) override {
            const bool is_reply = frame.kind == detail::FrameKind::reply;
            // Filled in place: a queued frame is a hundred bytes, moving it costs.
            if (frame.owned == nullptr && frame.payload.size() <= detail::Bytes::inline_capacity) {
                detail::QueuedFrame& queued = queue_.emplace(frame.priority, frame.channel);
                queued.bytes.assign_inline(frame.payload);
                queued.request_reply = frame.kind == detail::FrameKind::request;
                queued.is_reply = is_reply;
                return;
            }
            // A large frame in its own buffer or in a payload slot is kept as
            // it is; anything else is copied, before queueing (the copy may throw).
            std::uint32_t offset = 0;
            detail::Bytes bytes;
            if (frame.owned != nullptr) {
                offset = static_cast<std::uint32_t>(frame.payload.data() - frame.owned->data());
                bytes = std::move(*frame.owned);
            } else {
                bytes = detail::Bytes::copy_of(frame.payload);
            }
            detail::QueuedFrame& queued = queue_.emplace(frame.priority, frame.channel);
            queued.bytes = std::move(bytes);
            queued.offset = offset;
            queued.request_reply = frame.kind == detail::FrameKind::request;
            queued.is_reply = is_reply;
        }

    private:
        queue_type& queue_;
    };

    std::size_t drain() {
        Enqueue sink(queue_);
        return link_.drain(sink);
    }
    // The drain of the calls that never wait: none at all when the link
    // knows, without a system call, that nothing was written since its last
    // read (see detail::ArrivalFlags). Same result as drain().
    void drain_if_new() {
        if (!link_.nothing_new()) drain();
    }

    // Counts only what was (or is committed to be) written.
    void finish_send(detail::SendOutcome outcome, const Channel& channel, bool is_request, std::size_t count) {
        if (outcome == detail::SendOutcome::peer_closed) link_.raise_peer_closed();
        if (outcome == detail::SendOutcome::timed_out)
            throw Timeout(
                fmt::format("coproc: send on channel {} timed out{}; nothing was sent", channel, link_.peer_label()));
        if (count != 0) ctr_.count_sent(channel, is_request, count);
        if (outcome == detail::SendOutcome::timed_out_committed)
            throw Timeout(
                "coproc: send timed out mid-frame; the frame is counted and its rest is written by the next send");
    }

    void send_data(detail::FrameKind kind, const Msg& message, const Channel& channel, detail::Deadline deadline) {
        const auto outcome = link_.send_frame(
            kind, channel, message_priority(message),
            [&message](std::string& out, detail::Gather& gather) { detail::encode_gather(out, gather, message); },
            deadline);
        finish_send(outcome, channel, kind == detail::FrameKind::request, 1);
    }

    template <class Range>
    void send_batch(detail::FrameKind kind, const Range& messages, const Channel& channel, detail::Deadline deadline) {
        std::size_t count = 0;
        const auto outcome = link_.send_frames(
            kind, channel, messages,
            [](const auto& message) { return message_priority(static_cast<const Msg&>(message)); },
            [](std::string& out, const auto& message) { encode_append(out, static_cast<const Msg&>(message)); }, count,
            deadline);
        if (count == 0) return;
        finish_send(outcome, channel, kind == detail::FrameKind::request, count);
    }

    void send_control(detail::FrameKind kind, std::string_view payload, detail::Deadline deadline) {
        finish_send(link_.send_control(kind, payload, deadline), Channel{}, false, 0);
    }

    Msg receive_until(const Channel& channel, detail::Deadline deadline) {
        wait_queued(channel, deadline);
        return pop_from_queue(channel);
    }

    // Drains, blocking until something is queued on `channel`.
    void wait_queued(const Channel& channel, detail::Deadline deadline) {
        // Already queued, and nothing written since the last read: no system call.
        if (!queue_.empty(channel) && link_.nothing_new()) return;
        for (;;) {
            // Nothing queued and no deadline: a blocking read is the drain.
            if (!deadline && queue_.empty(channel)) link_.wait_for_data();
            drain();
            if (!queue_.empty(channel)) return;
            if (link_.peer_gone()) link_.raise_peer_closed();
            if (deadline && !link_.wait(deadline))
                throw Timeout(fmt::format("coproc: receive on channel {} timed out{}", channel, link_.peer_label()));
        }
    }

    void await_available_until(detail::Deadline deadline) {
        for (;;) {
            if (!deadline) link_.wait_for_data();
            if (drain() > 0) return;
            if (link_.peer_gone()) link_.raise_peer_closed();
            if (deadline && !link_.wait(deadline))
                throw Timeout(fmt::format("coproc: await_available timed out{}", link_.peer_label()));
        }
    }

    detail::Link link_;
    queue_type queue_;
    RequestCtr ctr_;

public:
    /// The range returned by receive_remaining (Item = Msg) and
    /// receive_remaining_messages (Item = DataMessage<Msg>). Single pass; the
    /// messenger must outlive it.
    template <class Item>
    class BasicRemainingRange {
    public:
        /// ++ blocks for the next message (or ends the range).
        using iterator = detail::PullIterator<BasicRemainingRange, Item>;

        BasicRemainingRange(BasicMessenger& messenger, Channel channel, std::optional<Duration> timeout)
            : messenger_(&messenger), channel_(std::move(channel)), timeout_(timeout) {}

        /// Blocks for the first message if a request is outstanding.
        iterator begin() {
            advance();
            return iterator(this);
        }
        std::default_sentinel_t end() const noexcept { return {}; }

    private:
        friend iterator;
        void advance() {
            current_.reset();
            if (messenger_->remaining(channel_) <= 0) return;
            messenger_->wait_queued(channel_, timeout_ ? detail::deadline_after(*timeout_) : detail::Deadline{});
            current_.emplace(messenger_->template pop_item<Item>(channel_));
        }

        BasicMessenger* messenger_;
        Channel channel_;
        std::optional<Duration> timeout_;
        std::optional<Item> current_;
    };
};

/// FIFO per channel.
template <class Msg>
using MultiMessenger = BasicMessenger<Msg, MultiQueue>;
/// Per channel: lowest priority first, FIFO among equals, no priority last.
template <class Msg>
using PriorityMessenger = BasicMessenger<Msg, PriorityMultiQueue>;

}  // namespace coproc

/// PriorityMessenger(fd=5, queue=PriorityMultiQueue(queues={1: 2 messages}), request_ctr=RequestCtr(...))
template <class Msg, template <class> class Queue>
struct fmt::formatter<coproc::BasicMessenger<Msg, Queue>> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::BasicMessenger<Msg, Queue>& m, Ctx& ctx) const {
        using Q = typename coproc::BasicMessenger<Msg, Queue>::queue_type;
        return fmt::format_to(ctx.out(), "{}(fd={}, queue={}, request_ctr={})",
                              Q::uses_priority ? "PriorityMessenger" : "MultiMessenger", m.fd(), m.queue(),
                              m.request_ctr());
    }
};
