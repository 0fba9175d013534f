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
#include "coproc/detail/output_capture.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

/// Owns one worker's ChildProcess and watches it for the host's Link. Give
/// the link a pointer to it (Link::set_watch) only while both live: the
/// WorkerResource destroys its messenger first. Not thread-safe.
class WorkerWatch final : public PeerWatch {
public:
    /// `output`: the worker's captured stdout/stderr (may be null).
    explicit WorkerWatch(std::unique_ptr<ChildProcess> child, std::unique_ptr<OutputCapture> output = nullptr) noexcept
        : child_(std::move(child)), output_(std::move(output)) {}

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
    /// The output's pipes, read on the link's waits.
    [[nodiscard]] int service_fd() const noexcept override { return output_ ? output_->fd() : -1; }
    void service() override { (void)pump_output(); }

    /// Delivers the complete lines the worker's output holds now; never
    /// blocks. Returns how many (0 without a lines sink).
    std::size_t pump_output() noexcept { return output_ ? output_->pump() : 0; }
    /// Once the child was reaped: the rest of its output, last partial lines included.
    std::size_t finish_output() noexcept { return output_ ? output_->finish() : 0; }

    /// Blocks until the child exits (reaping it) or the deadline passes;
    /// nullopt on deadline. Meanwhile whatever arrives on `link` is
    /// buffered (receivable later) and its output is delivered, so a child
    /// blocked writing to us can reach its exit; after the exit the rest of
    /// its output is delivered too. Throws what the link's reads throw
    /// (SystemError).
    std::optional<ExitStatus> wait(Link& link, Deadline deadline);

private:
    // child_->wait that also delivers the output, and the rest of it after the exit.
    std::optional<ExitStatus> wait_child(Deadline deadline, ChildProcess::Input* link_input);

    std::unique_ptr<ChildProcess> child_;
    std::unique_ptr<OutputCapture> output_;
};

}  // namespace coproc::detail
