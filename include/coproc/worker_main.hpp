// coproc/worker_main.hpp — the worker's side of spawn mode: main() of a
// program that a host starts with WorkerResource(coproc::Executable{...}).
//
//   // square_worker.cpp
//   using M = coproc::PriorityMessenger<long>;
//   int main() {
//       return coproc::worker_main<M>([](M& m) {
//           for (;;) { long n = m.receive_blocking(); m.send_reply(n * n); }
//       });
//   }
//
//   // the host, in any thread
//   coproc::WorkerResource<M> w(coproc::Executable{"./square_worker", {}});
//
// The target runs as a forked worker's does: an int result is the exit code,
// an escaping exception reaches the host as an error frame (exit code 1),
// ResourceRequestedClose (the host's close request) ends it with 0. The
// messenger type must be the same on both sides (the startup handshake
// compares a fingerprint of Msg: a mismatch is a SpawnError on the host), and
// both programs must be built by the same compiler family.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstdio>
#include <utility>

#include "coproc/detail/spawn.hpp"
#include "coproc/worker_resource.hpp"

namespace coproc {

namespace detail {
// worker_main's body; `own_options` null: the host's.
template <class Messenger, class F, class... Args>
int spawned_worker_main(const MessengerOptions* own_options, F&& target, Args&&... args) {
    SpawnedChannel channel;
    if (int code = 0; !take_spawned_channel(channel, code)) return code;
    auto call = bind_target<Messenger>(std::forward<F>(target), std::forward<Args>(args)...);
    const MessengerOptions& options = own_options != nullptr ? *own_options : channel.settings.messenger;
    const int code =
        serve_as_worker<Messenger>(LinkEnd{std::move(channel.stream), std::move(channel.side)}, options, call);
    std::fflush(nullptr);
    return code;
}
}  // namespace detail

/// Runs `target(messenger, args...)` as the worker of the host that spawned
/// this program, and returns the exit code for main() to return. The
/// messenger has the host's MessengerOptions (WorkerOptions::messenger), as
/// a forked worker's would. Call it first thing in main(), before starting
/// threads (it edits the environment: COPROC_WORKER is removed, so programs
/// this one starts do not see it). Sets the parent-death signal the host
/// asked for (WorkerOptions). If this program was not started by a
/// WorkerResource (run by hand, say), prints one line on stderr and returns
/// 2; if the host has already exited, returns 1 at once. Never throws.
template <class Messenger, class F, class... Args>
    requires std::invocable<std::decay_t<F>&, Messenger&, std::decay_t<Args>&...>
int worker_main(F&& target, Args&&... args) {
    return detail::spawned_worker_main<Messenger>(nullptr, std::forward<F>(target), std::forward<Args>(args)...);
}

/// The same with this side's own MessengerOptions instead of the host's.
template <class Messenger, class F, class... Args>
    requires std::invocable<std::decay_t<F>&, Messenger&, std::decay_t<Args>&...>
int worker_main(const MessengerOptions& options, F&& target, Args&&... args) {
    return detail::spawned_worker_main<Messenger>(&options, std::forward<F>(target), std::forward<Args>(args)...);
}

}  // namespace coproc
