// coproc/request_ctr.hpp — per-channel request/reply counters of a messenger.
//
//   m.send_request(x, ch);      // requests(ch) += 1, sent(ch) += 1 — after the send succeeded
//   m.receive_blocking(ch);     // received(ch) += 1, and replies(ch) += 1 if it was a reply
//   m.remaining(ch);            // requests(ch) - replies(ch)
//
// Counters only grow. The two sides of a pair never exchange counts.
// `remaining` is signed: an unsolicited reply makes it negative (as in Python
// coproc). Not thread-safe.
#pragma once

#include <cstdint>
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
    };

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
        auto& c = counts_.slot(ch);
        c.sent += n;
        if (is_request) c.requests += n;
    }
    /// Called by the messenger when a data frame is popped.
    void count_received(const Channel& ch, bool is_reply) { count_received(ch, 1, is_reply ? 1 : 0); }
    /// `n` data frames popped at once, `replies` of them replies.
    void count_received(const Channel& ch, std::uint64_t n, std::uint64_t replies) {
        if (n == 0) return;
        auto& c = counts_.slot(ch);
        c.received += n;
        c.replies += replies;
    }

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
    detail::ChannelMap<Counts> counts_;
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
