// The pool's two ways of starting workers (see pool_launcher.hpp).
#include "coproc/detail/pool_launcher.hpp"

#include "coproc/detail/fork_server.hpp"

#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace coproc::detail {
namespace {

constexpr const char* max_tasks_variable = "COPROC_POOL_MAX_TASKS";

class ForkLauncher final : public PoolLauncher {
public:
    ForkLauncher(ChildBody body, void* context, int parent_death_signal)
        : server_(body, context, parent_death_signal) {}
    Started start(Deadline deadline) override {
        auto started = server_.start_worker(deadline);
        return {started.pid, LinkEnd{std::move(started.channel), {}}};
    }
    void signal(long pid, int sig) override { server_.signal(pid, sig); }
    ExitStatus reap(long pid, Clock::duration grace) override { return server_.reap(pid, grace); }

private:
    ForkServer server_;
};

class SpawnLauncher final : public PoolLauncher {
public:
    SpawnLauncher(Executable program, SpawnSettings settings, std::size_t max_tasks)
        : program_(std::move(program)), settings_(std::move(settings)) {
        program_.env.push_back(fmt::format("{}={}", max_tasks_variable, max_tasks));
    }
    ~SpawnLauncher() override {
        for (auto& [pid, child] : children_) (void)child->kill_and_reap();
    }
    SpawnLauncher(const SpawnLauncher&) = delete;
    SpawnLauncher& operator=(const SpawnLauncher&) = delete;

    Started start(Deadline /*deadline: posix_spawn returns at once*/) override {
        auto ends = make_link_pair();
        auto child = spawn_process(program_.path, program_.args, program_.env, program_.working_directory,
                                   ends.second.stream.get(), ends.second.side.get(), settings_);
        const long pid = child->pid();
        children_.emplace(pid, std::move(child));
        return {pid, std::move(ends.first)};
    }
    void signal(long pid, int sig) override {
        if (auto it = children_.find(pid); it != children_.end()) it->second->signal(sig);
    }
    ExitStatus reap(long pid, Clock::duration grace) override {
        auto it = children_.find(pid);
        if (it == children_.end()) return ExitStatus::exited_with(-1);
        auto status = it->second->wait(deadline_after(grace));
        const ExitStatus s = status ? *status : it->second->kill_and_reap();
        children_.erase(it);
        return s;
    }

private:
    Executable program_;
    SpawnSettings settings_;
    std::map<long, std::unique_ptr<ChildProcess>> children_;
};

}  // namespace

std::unique_ptr<PoolLauncher> fork_launcher(ChildBody body, void* context, int parent_death_signal) {
    return std::make_unique<ForkLauncher>(body, context, parent_death_signal);
}

std::unique_ptr<PoolLauncher> spawn_launcher(const Executable& program, const SpawnSettings& settings,
                                             std::size_t max_tasks) {
    return std::make_unique<SpawnLauncher>(program, settings, max_tasks);
}

std::size_t take_pool_max_tasks() {
    const char* value = std::getenv(max_tasks_variable);
    if (value == nullptr) return 0;
    char* end = nullptr;
    const unsigned long long n = std::strtoull(value, &end, 10);
    if (end == value || *end != '\0')
        throw SpawnError(fmt::format("coproc: malformed {}='{}'", max_tasks_variable, value));
    (void)::unsetenv(max_tasks_variable);
    return static_cast<std::size_t>(n);
}

}  // namespace coproc::detail
