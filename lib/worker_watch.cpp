// A worker's child process seen through its host's link (see worker_watch.hpp).
#include "coproc/detail/worker_watch.hpp"

#include <chrono>

#include <fmt/format.h>

namespace coproc::detail {

void WorkerWatch::raise_peer_closed() {
    if (auto s = child_->wait(deadline_after(std::chrono::seconds(1)))) throw WorkerDied(child_->pid(), *s);
    throw ChannelClosed(fmt::format("coproc: worker {} closed its channel but is still running", child_->pid()));
}

std::optional<ExitStatus> WorkerWatch::wait(Link& link, Deadline deadline) {
    // The link's input, read while the child is waited for.
    class LinkInput final : public ChildProcess::Input {
    public:
        explicit LinkInput(Link& l) noexcept : link_(l) {}
        [[nodiscard]] int fd() const noexcept override { return link_.peer_gone() ? -1 : link_.fd(); }
        void read_available() override { link_.buffer_incoming(); }

    private:
        Link& link_;
    } input(link);
    return child_->wait(deadline, &input);
}

}  // namespace coproc::detail
