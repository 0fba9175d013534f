// A worker's child process seen through its host's link (see worker_watch.hpp).
#include "coproc/detail/worker_watch.hpp"

#include <chrono>

#include <fmt/format.h>

namespace coproc::detail {

namespace {

// The link's input, read while the child is waited for.
class LinkInput final : public ChildProcess::Input {
public:
    explicit LinkInput(Link& l) noexcept : link_(l) {}
    [[nodiscard]] int fd() const noexcept override { return link_.peer_gone() ? -1 : link_.fd(); }
    void read_available() override { link_.buffer_incoming(); }

private:
    Link& link_;
};

// The worker's captured output, likewise: a child blocked writing its
// stdout could otherwise never exit.
class OutputInput final : public ChildProcess::Input {
public:
    explicit OutputInput(WorkerWatch& w) noexcept : watch_(w) {}
    [[nodiscard]] int fd() const noexcept override { return watch_.service_fd(); }
    void read_available() override { (void)watch_.pump_output(); }

private:
    WorkerWatch& watch_;
};

}  // namespace

std::optional<ExitStatus> WorkerWatch::wait_child(Deadline deadline, ChildProcess::Input* link_input) {
    OutputInput output(*this);
    auto status = child_->wait(deadline, link_input, output_ ? &output : nullptr);
    if (status) (void)finish_output();
    return status;
}

void WorkerWatch::raise_peer_closed() {
    // What it printed as it died is delivered before the exception.
    if (auto s = wait_child(deadline_after(std::chrono::seconds(1)), nullptr)) throw WorkerDied(child_->pid(), *s);
    throw ChannelClosed(fmt::format("coproc: worker {} closed its channel but is still running", child_->pid()));
}

std::optional<ExitStatus> WorkerWatch::wait(Link& link, Deadline deadline) {
    LinkInput input(link);
    return wait_child(deadline, &input);
}

}  // namespace coproc::detail
