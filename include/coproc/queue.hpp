// coproc/queue.hpp — the per-channel queues behind the messengers.
//
//   coproc::PriorityMultiQueue<std::string> q;
//   q.put("later", 1.0, "jobs");
//   q.put("first", 0.0, "jobs");
//   q.get("jobs");   // "first": lowest priority first, FIFO among equals
//
// MultiQueue: FIFO per channel. PriorityMultiQueue: per channel, lowest
// priority first; equal priorities keep insertion order; +inf (no priority)
// goes last; NaN is treated as +inf. Channels are created on first put.
// get() on an empty channel throws std::out_of_range ("Cannot pop from empty
// queue", Python's IndexError). Items must be nothrow-movable. Move-only.
// Not thread-safe.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "coproc/channel.hpp"
#include "coproc/detail/channel_map.hpp"
#include "coproc/detail/page_alloc.hpp"
#include "coproc/priority.hpp"

namespace coproc {

namespace detail {
/// FIFO of T in one power-of-two ring: no allocation per element
/// (std::deque allocates a node per few large elements). It grows by
/// doubling and gives memory back as it empties: it halves when under a
/// quarter full, and an empty ring keeps at most `reserve` places (a drained
/// burst leaves no large buffer behind). Move-only.
template <class T>
class Ring {
    static_assert(std::is_nothrow_move_constructible_v<T>, "queued items must be nothrow move-constructible");

public:
    Ring() noexcept = default;
    Ring(Ring&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)),
          cap_(std::exchange(o.cap_, 0)),
          head_(std::exchange(o.head_, 0)),
          size_(std::exchange(o.size_, 0)),
          burst_(std::exchange(o.burst_, false)) {}
    Ring& operator=(Ring&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            cap_ = std::exchange(o.cap_, 0);
            head_ = std::exchange(o.head_, 0);
            size_ = std::exchange(o.size_, 0);
            burst_ = std::exchange(o.burst_, false);
        }
        return *this;
    }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring() { release(); }

    void push_back(T&& item) { emplace_back() = std::move(item); }
    /// Appends a default-constructed item and returns it (filled in place).
    T& emplace_back() {
        if (size_ == cap_) grow();
        T* slot = std::construct_at(data_ + ((head_ + size_) & (cap_ - 1)));
        ++size_;
        return *slot;
    }
    [[nodiscard]] T& front() noexcept { return data_[head_]; }
    [[nodiscard]] const T& front() const noexcept { return data_[head_]; }
    void pop_front() noexcept {
        std::destroy_at(data_ + head_);
        head_ = (head_ + 1) & (cap_ - 1);
        --size_;
        if (size_ == 0) {
            if (cap_ > reserve) release();
        } else if (size_ < cap_ / 4 && cap_ > reserve) {
            resize(cap_ / 2);  // moves size_ < cap_/4 items: amortised O(1) per pop
        }
    }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// Places allocated now.
    [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }

    /// Places an empty ring keeps for the next items.
    static constexpr std::size_t reserve = 16;

private:
    void grow() { resize(cap_ == 0 ? 1 : cap_ * 2); }
    // Moves the items into a new buffer of `cap` places (cap >= size_, a power of two).
    // Allocation failure (std::bad_alloc) leaves the ring as it was.
    void resize(std::size_t cap) {
        T* data = nullptr;
        try {
            // Large rings come from mmap: a drained burst is given back to the
            // kernel when its buffer is freed, not kept by malloc.
            data = allocate_buffer<T>(cap);
        } catch (...) {
            if (cap > cap_) throw;
            return;  // shrinking is optional: keep the larger buffer
        }
        for (std::size_t i = 0; i < size_; ++i) {
            T* from = data_ + ((head_ + i) & (cap_ - 1));
            std::construct_at(data + i, std::move(*from));
            std::destroy_at(from);
        }
        const std::size_t old_cap = std::exchange(cap_, cap);
        if (data_ != nullptr) free_buffer(data_, old_cap);
        data_ = data;
        head_ = 0;
        note_size(cap);
    }
    // A ring that held a burst (drained_burst_bytes) and is small again has
    // freed its items' heap memory too: hand it back once.
    void note_size(std::size_t cap) noexcept {
        if (cap * sizeof(T) >= drained_burst_bytes) {
            burst_ = true;
        } else if (burst_ && cap * sizeof(T) < page_alloc_threshold) {
            burst_ = false;
            release_free_heap();
        }
    }
    void release() noexcept {
        for (; size_ != 0; --size_) {
            std::destroy_at(data_ + head_);
            head_ = (head_ + 1) & (cap_ - 1);
        }
        if (data_ != nullptr) free_buffer(data_, cap_);
        data_ = nullptr;
        cap_ = 0;
        note_size(0);
    }

    T* data_ = nullptr;
    std::size_t cap_ = 0;  // 0 or a power of two
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    bool burst_ = false;  // held drained_burst_bytes since it was last small
};
}  // namespace detail

/// FIFO queue of one channel's items, ordered by priority then arrival.
template <class T>
class PriorityQueue {
public:
    /// Adds an item; NaN counts as +inf.
    void put(T item, double priority) { emplace(priority) = std::move(item); }
    /// Adds a default-constructed item and returns it, to be filled in place.
    T& emplace(double priority) {
        if (std::isnan(priority)) priority = no_priority;
        T& item = buckets_[priority].emplace_back();
        ++size_;
        return item;
    }
    /// Removes and returns the first item. Throws std::out_of_range if empty.
    T get() {
        T item = std::move(front());
        pop();
        return item;
    }
    /// The first item, without removing it. Throws std::out_of_range if empty.
    [[nodiscard]] const T& front() const { return first_nonempty()->second.front(); }
    [[nodiscard]] T& front() { return first_nonempty()->second.front(); }
    /// Removes the first item. Throws std::out_of_range if empty.
    void pop() {
        auto it = first_nonempty();
        it->second.pop_front();
        --size_;
        // Keep a few empty buckets (their rings keep their memory for the
        // next message); drop them once there are many distinct priorities.
        if (it->second.empty() && buckets_.size() > max_idle_buckets) buckets_.erase(it);
    }
    /// Same as pop() (the name a Ring uses).
    void pop_front() { pop(); }
    /// Priority of the first item. Throws std::out_of_range if empty.
    [[nodiscard]] double current_priority() const { return first_nonempty()->first; }
    /// Distinct priorities with a bucket (every queued one, and a few empty).
    [[nodiscard]] std::size_t bucket_count() const noexcept { return buckets_.size(); }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

private:
    static constexpr std::size_t max_idle_buckets = 8;
    auto first_nonempty() const {
        if (size_ == 0) throw std::out_of_range("Cannot pop from empty queue");
        auto it = buckets_.begin();
        while (it->second.empty()) ++it;
        return it;
    }
    auto first_nonempty() {
        if (size_ == 0) throw std::out_of_range("Cannot pop from empty queue");
        auto it = buckets_.begin();
        while (it->second.empty()) ++it;
        return it;
    }
    std::map<double, detail::Ring<T>> buckets_;
    std::size_t size_ = 0;
};

namespace detail {
/// Calls f(item) for the first `n` items of `q` (a Ring or a PriorityQueue;
/// null: none), removing each after its call even if f throws.
template <class Q, class F>
void consume_front(Q* q, std::size_t n, F&& f) {
    if (q == nullptr) return;
    for (n = std::min(n, q->size()); n > 0; --n) {
        struct PopOnExit {
            Q& queue;
            ~PopOnExit() { queue.pop_front(); }
        } pop_on_exit{*q};
        f(q->front());
    }
}
}  // namespace detail

namespace detail {
/// What MultiQueue and PriorityMultiQueue share: per channel one `PerChannel`
/// queue (a Ring or a PriorityQueue) with front(), pop_front(), size() and
/// empty(); they differ only in how items go in.
template <class T, class PerChannel>
class ChannelQueues {
public:
    /// Throws std::out_of_range if the channel is empty.
    T get(const Channel& channel = {}) {
        auto& q = nonempty(channel);
        T item = std::move(q.front());
        q.pop_front();
        settle(channel, q);
        return item;
    }
    /// The channel's first item. Throws std::out_of_range if the channel is empty.
    [[nodiscard]] T& front(const Channel& channel = {}) { return nonempty(channel).front(); }
    /// Removes the channel's first item. Throws std::out_of_range if the channel is empty.
    void pop(const Channel& channel = {}) {
        auto& q = nonempty(channel);
        q.pop_front();
        settle(channel, q);
    }
    /// Calls f(item) for each of the channel's first `n` items (at most its
    /// size), in queue order, removing each after its call, even if f
    /// throws. One channel lookup for all of them.
    template <class F>
    void consume(const Channel& channel, std::size_t n, F&& f) {
        PerChannel* q = queues_.find(channel);
        if (q == nullptr) return;
        struct SettleOnExit {
            ChannelQueues& self;
            const Channel& channel;
            PerChannel& q;
            ~SettleOnExit() { self.settle(channel, q); }
        } settle_on_exit{*this, channel, *q};
        consume_front(q, n, std::forward<F>(f));
    }
    [[nodiscard]] std::size_t size(const Channel& channel = {}) const { return queues_.size(channel); }
    [[nodiscard]] bool empty(const Channel& channel = {}) const { return size(channel) == 0; }
    /// Items queued on all channels.
    [[nodiscard]] std::size_t total_size() const { return queues_.total_size(); }
    /// Visits (channel, size) for every channel that has a queue, in channel
    /// order: each with queued items, and a few empty ones.
    template <class F>
    void for_each_channel(F&& f) const {
        queues_.for_each_channel(std::forward<F>(f));
    }

    /// Channels that have a queue (at most `max_idle_channels` of them empty).
    [[nodiscard]] std::size_t channel_count() const noexcept { return queues_.channel_count(); }
    /// Empty queues kept for reuse; any further emptied channel is forgotten,
    /// so that a channel per job costs nothing once its messages are popped.
    static constexpr std::size_t max_idle_channels = 8;

protected:
    PerChannel& nonempty(const Channel& channel) {
        auto* q = queues_.find(channel);
        if (q == nullptr || q->empty()) throw std::out_of_range("Cannot pop from empty queue");
        return *q;
    }
    /// The channel's queue, about to receive an item.
    PerChannel& filling(const Channel& channel) {
        if (PerChannel* q = queues_.find(channel)) {
            if (q->empty()) --idle_;
            return *q;
        }
        return queues_.slot(channel);
    }
    /// After a pop: an emptied queue is kept (a few) or forgotten.
    void settle(const Channel& channel, PerChannel& q) noexcept {
        if (!q.empty()) return;
        if (idle_ < max_idle_channels)
            ++idle_;
        else
            queues_.erase(channel);
    }
    ChannelMap<PerChannel> queues_;
    std::size_t idle_ = 0;  // empty queues in queues_
};
}  // namespace detail

/// One FIFO queue per channel.
template <class T>
class MultiQueue : public detail::ChannelQueues<T, detail::Ring<T>> {
public:
    static constexpr std::string_view type_name = "MultiQueue";
    static constexpr bool uses_priority = false;

    void put(T item, const Channel& channel = {}) { this->filling(channel).push_back(std::move(item)); }
    /// Same as put(item, channel): a MultiQueue ignores priorities.
    void put(T item, double /*priority*/, const Channel& channel) { put(std::move(item), channel); }
    /// Adds a default-constructed item and returns it, to be filled in place.
    T& emplace(double /*priority*/, const Channel& channel) { return this->filling(channel).emplace_back(); }
};

/// One PriorityQueue per channel: lowest priority first, FIFO among equals.
template <class T>
class PriorityMultiQueue : public detail::ChannelQueues<T, PriorityQueue<T>> {
public:
    static constexpr std::string_view type_name = "PriorityMultiQueue";
    static constexpr bool uses_priority = true;

    void put(T item, double priority, const Channel& channel = {}) {
        this->filling(channel).put(std::move(item), priority);
    }
    /// Adds a default-constructed item and returns it, to be filled in place.
    T& emplace(double priority, const Channel& channel) { return this->filling(channel).emplace(priority); }
};

namespace detail {
template <class Q>
struct QueueFormatter : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const Q& q, Ctx& ctx) const {
        auto out = fmt::format_to(ctx.out(), "{}(queues={{", Q::type_name);
        bool first = true;
        q.for_each_channel([&](const Channel& ch, std::size_t n) {
            out = fmt::format_to(out, "{}{}: {} message{}", first ? "" : ", ", ch, n, n == 1 ? "" : "s");
            first = false;
        });
        return fmt::format_to(out, "}})");
    }
};
}  // namespace detail

}  // namespace coproc

/// MultiQueue(queues={1: 2 messages, 'b': 0 messages})
template <class T>
struct fmt::formatter<coproc::MultiQueue<T>> : coproc::detail::QueueFormatter<coproc::MultiQueue<T>> {};
template <class T>
struct fmt::formatter<coproc::PriorityMultiQueue<T>> : coproc::detail::QueueFormatter<coproc::PriorityMultiQueue<T>> {};
