// coproc/detail/channel_map.hpp — per-channel slots (queues, counters) in
// channel order, with the last lookup cached. Internal. Not thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <utility>

#include "coproc/channel.hpp"

namespace coproc::detail {

/// A cached pointer that a move hands over and clears in the source (the
/// moved-from container no longer owns the node it points to).
template <class P>
struct CachedPtr {
    P* ptr = nullptr;
    CachedPtr() noexcept = default;
    CachedPtr(CachedPtr&& o) noexcept : ptr(std::exchange(o.ptr, nullptr)) {}
    CachedPtr& operator=(CachedPtr&& o) noexcept {
        ptr = std::exchange(o.ptr, nullptr);
        return *this;
    }
    CachedPtr(const CachedPtr&) noexcept {}  // a copy caches nothing
    // Self-assignment is harmless: it only drops the cache.
    CachedPtr& operator=(const CachedPtr&) noexcept {  // NOLINT(bugprone-unhandled-self-assignment)
        ptr = nullptr;
        return *this;
    }
    ~CachedPtr() = default;
};

/// Channel -> slot map (the multi-queues' queues, RequestCtr's counts). Most traffic uses one
/// channel, so the last lookup is cached (map nodes are stable).
template <class Slot>
class ChannelMap {
public:
    using Node = typename std::map<Channel, Slot>::value_type;

    [[nodiscard]] const Slot* find(const Channel& channel) const {
        if (last_.ptr != nullptr && last_.ptr->first == channel) return &last_.ptr->second;
        auto it = slots_.find(channel);
        if (it == slots_.end()) return nullptr;
        last_.ptr = &*it;
        return &it->second;
    }
    [[nodiscard]] Slot* find(const Channel& channel) { return const_cast<Slot*>(std::as_const(*this).find(channel)); }
    /// The channel's queue, created on first use.
    [[nodiscard]] Slot& slot(const Channel& channel) {
        if (auto* q = find(channel)) return *q;
        auto it = slots_.try_emplace(channel).first;
        last_.ptr = &*it;
        return it->second;
    }
    /// The channel's (key, slot) node, created on first use. Nodes are
    /// stable until erased.
    [[nodiscard]] Node& node(const Channel& channel) {
        if (last_.ptr != nullptr && last_.ptr->first == channel) return const_cast<Node&>(*last_.ptr);
        auto it = slots_.try_emplace(channel).first;
        last_.ptr = &*it;
        return *it;
    }
    /// Removes the channel's slot, if it has one.
    void erase(const Channel& channel) {
        auto it = slots_.find(channel);
        if (it == slots_.end()) return;
        if (last_.ptr == &*it) last_.ptr = nullptr;
        slots_.erase(it);
    }
    /// Number of channels with a slot.
    [[nodiscard]] std::size_t channel_count() const noexcept { return slots_.size(); }
    [[nodiscard]] std::size_t size(const Channel& channel) const {
        const auto* q = find(channel);
        return q == nullptr ? 0 : q->size();
    }
    [[nodiscard]] std::size_t total_size() const {
        std::size_t n = 0;
        for (const auto& [ch, q] : slots_) n += q.size();
        return n;
    }
    template <class F>
    void for_each_channel(F&& f) const {
        for (const auto& [ch, q] : slots_) f(ch, q.size());
    }
    /// Visits (channel, slot) in channel order.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& [ch, q] : slots_) f(ch, q);
    }

private:
    std::map<Channel, Slot> slots_;
    mutable CachedPtr<const Node> last_;
};

}  // namespace coproc::detail
