// coproc/request_ctr.hpp — per-channel request/reply counters of a messenger.
//
//   m.send_request(x, ch);      // requests(ch) += 1, sent(ch) += 1 — after the send succeeded
//   m.receive_blocking(ch);     // received(ch) += 1, and replies(ch) += 1 if it was a reply
//   m.remaining(ch);            // requests(ch) - replies(ch)
//
// Counters only grow. The two sides of a pair never exchange counts.
// `remaining` is signed: an unsolicited reply makes it negative (as in Python
// coproc). Not thread-safe.
//
// Memory stays bounded however many channels come and go (a channel per
// job): a channel whose requests are all answered (remaining == 0) and that
// has not been counted on for a while is forgotten once more than
// `kept_settled_channels` such channels are held. A forgotten channel's
// counters read 0 again, so remaining() stays right (0) if it is used again;
// only its sent/received/requests/replies tallies restart. A channel with a
// request outstanding (or more replies than requests) is never forgotten.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "coproc/channel.hpp"
#include "coproc/detail/channel_map.hpp"

namespace coproc {

class RequestCtr {
public:
    struct Counts {
        std::uint64_t requests = 0;
        std::uint64_t replies = 0;
        std::uint64_t sent = 0;
        std::uint64_t received = 0;
        // Bookkeeping of forgetting (see the top): in settled_, counted since.
        bool in_settled = false;
        bool touched = false;
        [[nodiscard]] bool settled() const noexcept { return requests == replies; }
    };
    /// Settled channels kept before the least recently counted are forgotten.
    static constexpr std::size_t kept_settled_channels = 1024;

    RequestCtr() = default;
    RequestCtr(RequestCtr&&) noexcept = default;
    RequestCtr& operator=(RequestCtr&&) noexcept = default;
    RequestCtr(const RequestCtr& other) : counts_(other.counts_) { adopt_settled(other); }
    RequestCtr& operator=(const RequestCtr& other) {
        if (this != &other) {
            counts_ = other.counts_;
            settled_.clear();
            adopt_settled(other);
        }
        return *this;
    }
    ~RequestCtr() = default;

    [[nodiscard]] std::uint64_t requests(const Channel& ch = {}) const { return get(ch).requests; }
    [[nodiscard]] std::uint64_t replies(const Channel& ch = {}) const { return get(ch).replies; }
    [[nodiscard]] std::uint64_t sent(const Channel& ch = {}) const { return get(ch).sent; }
    [[nodiscard]] std::uint64_t received(const Channel& ch = {}) const { return get(ch).received; }
    /// requests - replies; may be negative after unsolicited replies.
    [[nodiscard]] std::int64_t remaining(const Channel& ch = {}) const {
        const auto& c = get(ch);
        return static_cast<std::int64_t>(c.requests) - static_cast<std::int64_t>(c.replies);
    }

    /// Called by the messenger after a data frame was written.
    void count_sent(const Channel& ch, bool is_request, std::uint64_t n = 1) {
        auto& node = counts_.node(ch);
        node.second.sent += n;
        if (is_request) node.second.requests += n;
        counted(node);
    }
    /// Called by the messenger when a data frame is popped.
    void count_received(const Channel& ch, bool is_reply) { count_received(ch, 1, is_reply ? 1 : 0); }
    /// `n` data frames popped at once, `replies` of them replies.
    void count_received(const Channel& ch, std::uint64_t n, std::uint64_t replies) {
        if (n == 0) return;
        auto& node = counts_.node(ch);
        node.second.received += n;
        node.second.replies += replies;
        counted(node);
    }

    /// Channels with counters held (settled ones included, up to the bound).
    [[nodiscard]] std::size_t channel_count() const noexcept { return counts_.channel_count(); }

    /// Visits (channel, counts) in channel order.
    template <class F>
    void for_each_channel(F&& f) const {
        counts_.for_each(std::forward<F>(f));
    }

private:
    [[nodiscard]] const Counts& get(const Channel& ch) const {
        static const Counts zero{};
        const Counts* c = counts_.find(ch);
        return c == nullptr ? zero : *c;
    }
    using Node = detail::ChannelMap<Counts>::Node;

    // A second-chance (CLOCK) list of settled channels: each at most once;
    // one counted on since it was listed goes round again, one that was not
    // is forgotten while the list is over its bound.
    void counted(Node& node) {
        Counts& c = node.second;
        c.touched = true;
        if (c.in_settled || !c.settled()) return;
        c.in_settled = true;
        c.touched = false;
        settled_.push_back(&node);
        for (int budget = 4; budget > 0 && settled_.size() > kept_settled_channels; --budget) {
            Node* oldest = settled_.front();
            settled_.pop_front();
            Counts& o = oldest->second;
            if (!o.settled()) {
                o.in_settled = false;  // listed again when it settles
            } else if (o.touched) {
                o.touched = false;
                settled_.push_back(oldest);
            } else {
                counts_.erase(Channel(oldest->first));  // copied: the node goes
            }
        }
    }
    // After copying other's counts: the same list, pointing into our nodes.
    void adopt_settled(const RequestCtr& other) {
        for (const Node* n : other.settled_) settled_.push_back(&counts_.node(n->first));
    }

    detail::ChannelMap<Counts> counts_;
    std::deque<Node*> settled_;
};

}  // namespace coproc

/// RequestCtr(requests={1: 3}, replies={1: 2}, sent={1: 3}, received={1: 2});
/// zero counts are left out, like Python's Counter.
template <>
struct fmt::formatter<coproc::RequestCtr> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::RequestCtr& r, Ctx& ctx) const {
        auto out = fmt::format_to(ctx.out(), "RequestCtr(");
        const auto field = [&](std::string_view name, std::uint64_t coproc::RequestCtr::Counts::*member, bool last) {
            out = fmt::format_to(out, "{}={{", name);
            bool first = true;
            r.for_each_channel([&](const coproc::Channel& ch, const coproc::RequestCtr::Counts& c) {
                if (c.*member == 0) return;
                out = fmt::format_to(out, "{}{}: {}", first ? "" : ", ", ch, c.*member);
                first = false;
            });
            out = fmt::format_to(out, "}}{}", last ? "" : ", ");
        };
        field("requests", &coproc::RequestCtr::Counts::requests, false);
        field("replies", &coproc::RequestCtr::Counts::replies, false);
        field("sent", &coproc::RequestCtr::Counts::sent, false);
        field("received", &coproc::RequestCtr::Counts::received, true);
        return fmt::format_to(out, ")");
    }
};
