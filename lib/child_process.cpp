// Child processes: signal hygiene around fork, the child's start-up (fd
// closing, parent-death signal), and pidfd-based waiting and signalling.
#include "coproc/detail/child_process.hpp"

#include "inline_syscall.hpp"
#include "socket.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
// glibc 2.36's <sys/pidfd.h> lacks extern "C" (STYLE.md, pitfalls).
extern "C" {
#include <sys/pidfd.h>
}

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include <fmt/format.h>

namespace coproc::detail {
namespace {

ExitStatus decode_wait_status(int status) {
    if (WIFEXITED(status)) return ExitStatus::exited_with(WEXITSTATUS(status));
    return ExitStatus::killed_by(WTERMSIG(status));
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
// System calls go inline (inline_syscall.hpp: each libc page is a page fault).
[[noreturn]] void start_child(RegistrySnapshot& registries, int channel_fd, int side_fd, int exit_pipe_read,
                              pid_t parent, int death_signal, ChildBody body, void* context) {
    // First, before anything here could map memory into these holes: the
    // kernel did not copy these mappings; tell valgrind, which thinks it did.
    for (const DontforkRange& r : registries.ranges) (void)sys::munmap(r.addr, r.size);
    // Default dispositions, then unblock: a parent handler must never
    // run in the child. Catch2 and other frameworks install crash handlers.
    // Resetting all 31 costs no more than finding out which need it: a fresh
    // process's first /proc read is as dear as these calls.
    for (int sig = 1; sig < 32; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) (void)sys::set_default_disposition(sig);
    }
    (void)sys::unblock_all_signals();
    for (const int fd : registries.fds) {
        if (fd != channel_fd && fd != side_fd) (void)sys::close(fd);
    }
    registries.reset_in_child(channel_fd, side_fd);
    if (exit_pipe_read >= 0) (void)sys::close(exit_pipe_read);  // we keep only the write end
    if (death_signal != 0) {
        (void)sys::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(death_signal));
        // The parent may have died before prctl: then nobody will signal us.
        if (sys::getppid() != parent) ::_exit(1);
    }
    body(context, channel_fd);
    ::_exit(127);  // body must not return; never unwind into the caller's stack
}

}  // namespace

// pidfd_open needs Linux 5.3; valgrind 3.19 does not know it either.
bool pidfd_supported() {
    static const bool supported = [] {
        if (const char* force = std::getenv("COPROC_FORCE_EXIT_PIPE"); force != nullptr && *force == '1') return false;
        const int fd = ::pidfd_open(::getpid(), 0);
        if (fd < 0) return false;
        ::close(fd);
        return true;
    }();
    return supported;
}

std::unique_ptr<ChildProcess> ChildProcess::fork(int channel_fd, int side_fd, int parent_death_signal, ChildBody body,
                                                 void* context) {
    // Everything the child needs is prepared before fork.
    auto [exit_read, exit_write] = exit_pipe();
    std::fflush(nullptr);  // or buffered output would be written twice
    // Locked from here to the fork (see RegistrySnapshot); may throw, so
    // before the signal mask changes.
    RegistrySnapshot registries;
    const pid_t parent = registries.pid;

    // Block all but the crash signals around fork, so no handler runs in the
    // child before its dispositions are reset.
    sigset_t all, old;
    sigfillset(&all);
    for (int sig = 1; sig < 32; ++sig) {
        if (is_crash_signal(sig)) sigdelset(&all, sig);
    }
    (void)::pthread_sigmask(SIG_SETMASK, &all, &old);
    const pid_t pid = ::fork();
    if (pid == 0)
        start_child(registries, channel_fd, side_fd, exit_read.get(), parent, parent_death_signal, body, context);
    const int fork_errno = errno;
    registries.release();
    (void)::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) throw SpawnError(fmt::format("coproc: fork failed: {}", std::strerror(fork_errno)));

    exit_write.reset();  // only the child holds it now: EOF when it exits
    return adopt(pid, std::move(exit_read));
}

FdPair ChildProcess::exit_pipe() {
    if (pidfd_supported()) return {};
    int p[2];
    check_unix(::pipe2(p, O_CLOEXEC), "pipe2");
    return {UniqueFd(p[0]), UniqueFd(p[1])};
}

std::unique_ptr<ChildProcess> ChildProcess::adopt(long pid, UniqueFd exit_read) {
    if (exit_read) return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::move(exit_read), false));
    const int pidfd = ::pidfd_open(static_cast<pid_t>(pid), 0);  // sets O_CLOEXEC itself
    if (pidfd < 0) {
        const int err = errno;
        (void)::kill(static_cast<pid_t>(pid), SIGKILL);
        (void)retry_eintr(::waitpid, static_cast<pid_t>(pid), nullptr, 0);
        throw SpawnError(fmt::format("coproc: pidfd_open failed: {}", std::strerror(err)));
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, UniqueFd(pidfd), true));
}

ChildProcess::ChildProcess(long pid, UniqueFd exit_fd, bool is_pidfd)
    : pid_(pid), exit_fd_(std::move(exit_fd)), is_pidfd_(is_pidfd), exit_fd_registration_(exit_fd_.get()) {}

ChildProcess::~ChildProcess() {
    if (!status_) (void)kill_and_reap();
}

bool ChildProcess::reap_now() {
    if (is_pidfd_) {
        siginfo_t info{};
        const int rc = retry_eintr(::waitid, static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(exit_fd_.get()), &info,
                                   WEXITED | WNOHANG);
        if (rc == 0 && info.si_pid == 0) return false;
        if (rc == 0) {
            status_ = decode(info);
            return true;
        }
    } else {
        int status = 0;
        const pid_t rc = retry_eintr(::waitpid, static_cast<pid_t>(pid_), &status, WNOHANG);
        if (rc == 0) return false;
        if (rc > 0) {
            status_ = decode_wait_status(status);
            return true;
        }
    }
    // ECHILD: someone else reaped our child (the docs say not to).
    if (errno == ECHILD) {
        status_ = ExitStatus::exited_with(-1);
        return true;
    }
    throw_system_error(errno, "waitid");
}

bool ChildProcess::poll() { return status_ || reap_now(); }

std::optional<ExitStatus> ChildProcess::wait(Deadline deadline, Input* input, Input* other) {
    while (!poll()) {
        const int extra = input != nullptr ? input->fd() : -1;
        const int second = other != nullptr ? other->fd() : -1;
        // An exit pipe stays open while a grandchild the worker forked holds
        // its write end: without a pidfd, reap-poll at least every 100 ms.
        const unsigned ready = wait_readable(
            exit_fd_.get(), extra, is_pidfd_ ? deadline : at_most(deadline, std::chrono::milliseconds(100)), second);
        if (ready == ready_none) {
            if (deadline && Clock::now() >= *deadline) return std::nullopt;
            continue;
        }
        if ((ready & ready_extra) != 0) input->read_available();
        if ((ready & ready_service) != 0) other->read_available();
        if ((ready & ready_fd) != 0 && !is_pidfd_ && !poll()) {
            // Exit pipe at EOF: the child closes it as it exits, a moment
            // before it can be reaped (or it closed the pipe itself: then we
            // can only poll, briefly, until the deadline).
            if (deadline && Clock::now() >= *deadline) return std::nullopt;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
    return status_;
}

void ChildProcess::signal(int sig) noexcept {
    if (status_) return;
    // Without a pidfd, kill() is still race-free here: the pid cannot be
    // reused before we reap it, and we are its only reaper.
    if (is_pidfd_)
        (void)::pidfd_send_signal(exit_fd_.get(), sig, nullptr, 0);
    else
        (void)::kill(static_cast<pid_t>(pid_), sig);
}

ExitStatus ChildProcess::kill_and_reap() noexcept {
    try {
        signal(SIGKILL);
        if (auto s = wait(std::nullopt)) return *s;
    } catch (...) {
        // waitid failed in a way we cannot act on; report what we know.
    }
    if (!status_) status_ = ExitStatus::killed_by(SIGKILL);
    return *status_;
}

void child_exit(int code) noexcept {
    std::fflush(nullptr);
    ::_exit(code);
}

}  // namespace coproc::detail
