// coproc/detail/deadline.hpp — absolute deadlines on the steady clock, the
// currency of every timed wait in coproc. Internal.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <optional>

namespace coproc::detail {

using Clock = std::chrono::steady_clock;
/// An absolute deadline; nullopt means "wait forever".
using Deadline = std::optional<Clock::time_point>;

/// Deadline `timeout` from now (saturating; negative means "already passed").
[[nodiscard]] inline Deadline deadline_after(Clock::duration timeout) noexcept {
    const auto now = Clock::now();
    if (timeout > Clock::time_point::max() - now) return std::nullopt;
    return now + timeout;
}

/// The earlier of `deadline` and `most` from now: a wait that must wake up
/// at least that often to look at something else.
[[nodiscard]] inline Deadline at_most(Deadline deadline, Clock::duration most) noexcept {
    const auto soon = Clock::now() + most;
    return deadline && *deadline < soon ? deadline : Deadline(soon);
}

/// Milliseconds left until `deadline` for poll()-style calls, rounded up so a
/// wait never ends early; -1 for no deadline, 0 once it has passed.
[[nodiscard]] inline int poll_timeout(Deadline deadline) noexcept {
    if (!deadline) return -1;
    const auto left = *deadline - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

}  // namespace coproc::detail
