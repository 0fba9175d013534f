// coproc/detail/worker_watch.hpp — the worker layer's join of a ChildProcess
// and the host's Link to it: the link sees the child as its peer
// (PeerWatch), and waits for the child's exit keep reading the link. Neither
// the process nor the link knows the other. Compiled in
// lib/worker_watch.cpp. Internal.
#pragma once

#include <memory>
#include <optional>

#include "coproc/detail/child_process.hpp"
#include "coproc/detail/deadline.hpp"
#include "coproc/detail/link.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

/// Owns one worker's ChildProcess and watches it for the host's Link. Give
/// the link a pointer to it (Link::set_watch) only while both live: the
/// WorkerResource destroys its messenger first. Not thread-safe.
class WorkerWatch final : public PeerWatch {
public:
    explicit WorkerWatch(std::unique_ptr<ChildProcess> child) noexcept : child_(std::move(child)) {}

    [[nodiscard]] ChildProcess& child() noexcept { return *child_; }
    [[nodiscard]] const ChildProcess& child() const noexcept { return *child_; }

    [[nodiscard]] int liveness_fd() const noexcept override { return child_->exit_fd(); }
    /// Never blocks: reaps the child if it has exited.
    [[nodiscard]] bool peer_exited() override { return child_->poll(); }
    /// Blocks up to 1 s: the child closes its end as it exits, a moment
    /// before it can be reaped. Then throws WorkerDied with its status, or
    /// ChannelClosed if it closed its channel but still runs.
    [[noreturn]] void raise_peer_closed() override;
    [[nodiscard]] long peer_pid() const noexcept override { return child_->pid(); }

    /// Blocks until the child exits (reaping it) or the deadline passes;
    /// nullopt on deadline. Meanwhile whatever arrives on `link` is
    /// buffered (receivable later), so a child blocked writing to us can
    /// reach its exit. Throws what the link's reads throw (SystemError).
    std::optional<ExitStatus> wait(Link& link, Deadline deadline);

private:
    std::unique_ptr<ChildProcess> child_;
};

}  // namespace coproc::detail
