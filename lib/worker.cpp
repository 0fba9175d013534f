// Forking workers: signal hygiene around fork, the child's start-up (fd
// closing, parent-death signal), and pidfd-based waiting and signalling.
#include "coproc/detail/child_process.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
// glibc 2.36's <sys/pidfd.h> lacks extern "C" (STYLE.md, pitfalls).
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include <fmt/format.h>

namespace coproc::detail {
namespace {

struct FdRegistry {
    std::mutex mutex;
    std::vector<int> fds;
    pid_t owner = 0;  // the process these fds belong to
};

FdRegistry& registry() {
    static auto* r = new FdRegistry;  // leaked: children and late destructors may still use it
    return *r;
}

// In a worker that itself starts workers, the entries inherited from its
// parent name fds it closed at start-up (their numbers may be reused since).
void forget_inherited(FdRegistry& r) {
    const pid_t self = ::getpid();
    if (r.owner != self) {
        r.fds.clear();
        r.owner = self;
    }
}

std::vector<int> registry_snapshot() {
    auto& r = registry();
    const std::lock_guard lock(r.mutex);
    forget_inherited(r);
    return r.fds;
}

ExitStatus decode(const siginfo_t& info) {
    if (info.si_code == CLD_EXITED) return ExitStatus::exited_with(info.si_status);
    return ExitStatus::killed_by(info.si_status);
}

bool is_crash_signal(int sig) {
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGABRT || sig == SIGTRAP || sig == SIGSYS ||
           sig == SIGFPE;
}

// Runs in the child between fork and the body: async-signal-safe calls only,
// no allocation (another thread of the parent may have held the heap lock).
[[noreturn]] void start_child(const std::vector<int>& close_fds, int channel_fd, pid_t parent, int death_signal,
                              ChildBody body, void* context) {
    // Default dispositions first, then unblock: a parent handler must never
    // run in the child. Catch2 and other frameworks install crash handlers.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < 32; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) (void)::sigaction(sig, &dfl, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    (void)::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    for (const int fd : close_fds) {
        if (fd != channel_fd) (void)::close(fd);
    }
    if (death_signal != 0) {
        (void)::prctl(PR_SET_PDEATHSIG, death_signal);
        // The parent may have died before prctl: then nobody will signal us.
        if (::getppid() != parent) ::_exit(1);
    }
    body(context, channel_fd);
    ::_exit(127);  // body must not return; never unwind into the caller's stack
}

}  // namespace

FdRegistration::FdRegistration(int fd) : fd_(fd) {
    auto& r = registry();
    const std::lock_guard lock(r.mutex);
    forget_inherited(r);
    r.fds.push_back(fd);
}

FdRegistration& FdRegistration::operator=(FdRegistration&& other) noexcept {
    if (this != &other) {
        reset();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

void FdRegistration::reset() noexcept {
    if (fd_ < 0) return;
    auto& r = registry();
    const std::lock_guard lock(r.mutex);
    if (r.owner == ::getpid()) {
        if (auto it = std::find(r.fds.begin(), r.fds.end(), fd_); it != r.fds.end()) r.fds.erase(it);
    }
    fd_ = -1;
}

std::unique_ptr<ChildProcess> ChildProcess::fork(int channel_fd, int parent_death_signal, ChildBody body,
                                                 void* context) {
    // Everything the child needs is prepared before fork.
    const std::vector<int> close_fds = registry_snapshot();
    const pid_t parent = ::getpid();
    std::fflush(nullptr);  // or buffered output would be written twice

    // Block all but the crash signals around fork, so no handler runs in the
    // child before its dispositions are reset.
    sigset_t all, old;
    sigfillset(&all);
    for (int sig = 1; sig < 32; ++sig) {
        if (is_crash_signal(sig)) sigdelset(&all, sig);
    }
    (void)::pthread_sigmask(SIG_SETMASK, &all, &old);
    const pid_t pid = ::fork();
    if (pid == 0) start_child(close_fds, channel_fd, parent, parent_death_signal, body, context);
    const int fork_errno = errno;
    (void)::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) throw SpawnError(fmt::format("coproc: fork failed: {}", std::strerror(fork_errno)));

    const int pidfd = ::pidfd_open(pid, 0);
    if (pidfd < 0) {
        const int err = errno;
        (void)::kill(pid, SIGKILL);
        (void)retry_eintr(::waitpid, pid, nullptr, 0);
        throw SpawnError(fmt::format("coproc: pidfd_open failed: {}", std::strerror(err)));
    }
    // pidfd_open sets O_CLOEXEC itself.
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, UniqueFd(pidfd)));
}

ChildProcess::ChildProcess(long pid, UniqueFd pidfd)
    : pid_(pid), pidfd_(std::move(pidfd)), pidfd_registration_(pidfd_.get()) {}

ChildProcess::~ChildProcess() {
    if (!status_) (void)kill_and_reap();
}

bool ChildProcess::poll() {
    if (status_) return true;
    siginfo_t info{};
    const int rc = retry_eintr(::waitid, static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
                               WEXITED | WNOHANG);
    if (rc == -1) {
        // ECHILD: someone else reaped our child (the docs say not to).
        if (errno == ECHILD) {
            status_ = ExitStatus::exited_with(-1);
            return true;
        }
        throw_system_error(errno, "waitid");
    }
    if (info.si_pid == 0) return false;
    status_ = decode(info);
    return true;
}

std::optional<ExitStatus> ChildProcess::wait(Deadline deadline, Link* link) {
    while (!poll()) {
        const int extra = link != nullptr && !link->peer_gone() ? link->fd() : -1;
        const unsigned ready = wait_readable(pidfd_.get(), extra, deadline);
        if (ready == ready_none) return std::nullopt;
        if ((ready & ready_extra) != 0) link->buffer_incoming();
    }
    return status_;
}

void ChildProcess::signal(int sig) noexcept {
    if (status_) return;
    (void)::pidfd_send_signal(pidfd_.get(), sig, nullptr, 0);
}

ExitStatus ChildProcess::kill_and_reap() noexcept {
    try {
        signal(SIGKILL);
        if (auto s = wait(std::nullopt, nullptr)) return *s;
    } catch (...) {
        // waitid failed in a way we cannot act on; report what we know.
    }
    if (!status_) status_ = ExitStatus::killed_by(SIGKILL);
    return *status_;
}

void ChildProcess::raise_peer_closed() {
    // The child closes its end as it exits, a moment before it can be reaped.
    if (auto s = wait(deadline_after(std::chrono::seconds(1)), nullptr)) throw WorkerDied(pid_, *s);
    throw ChannelClosed(fmt::format("coproc: worker {} closed its channel but is still running", pid_));
}

void child_exit(int code) noexcept {
    std::fflush(nullptr);
    ::_exit(code);
}

}  // namespace coproc::detail
