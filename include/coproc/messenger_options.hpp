// coproc/messenger_options.hpp — MessengerOptions, the settings of one side
// of a messenger link (frame size limit, shared-memory payloads).
//
//   coproc::MessengerOptions big{.max_frame_size = std::size_t{1} << 30};
//   auto [worker, host] = coproc::PriorityMessenger<Blob>::new_pair(big);
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstddef>

#include "coproc/detail/frame.hpp"

namespace coproc {

struct MessengerOptions {
    /// Largest frame (channel name + payload) this side accepts and sends.
    /// Longer incoming lengths are a ProtocolError before any allocation.
    std::size_t max_frame_size = detail::default_max_frame_size;
    /// Messages whose encoding is at least this large travel through shared
    /// memory (a memfd slot passed once over the socket, then reused): one
    /// copy in, one copy out, instead of a trip through the kernel. 0 turns
    /// it off. Only the sending side's setting matters.
    std::size_t shared_memory_threshold = std::size_t{64} << 10;
    /// The most shared memory one side keeps mapped for its outgoing large
    /// messages (in at most eight slots). When every slot is held (the
    /// receiver has not popped them yet) and no new one fits, large messages
    /// go through the socket, with the socket's back-pressure: a send blocks
    /// while the socket buffer is full.
    std::size_t shared_memory_limit = std::size_t{512} << 20;
};

namespace detail {
/// Calls f(field) for every field of `options`, in a fixed order: the one
/// list spawn mode writes to a spawned worker's environment and reads back
/// (a new option is added to the struct and here, nowhere else).
template <class Options, class F>
void for_each_option(Options& options, F&& f) {
    f(options.max_frame_size);
    f(options.shared_memory_threshold);
    f(options.shared_memory_limit);
}
}  // namespace detail

}  // namespace coproc
