// lib/inline_syscall.hpp — system calls issued inline, without libc's wrappers,
// for the code a freshly forked worker runs first. Private to the library.
//
// Why: fork does not copy the page tables of file mappings, so every page of
// libc's code a new worker runs is a page fault, dear on virtual machines
// (bench_ipc's spawn figures show the whole start). The child's start-up called wrappers on several libc pages
// (sigaction, sigemptyset, pthread_sigmask, close, prctl, then send, recv and
// poll for its first messages); inline, the calls run from the libcoproc
// page that is running anyway.
//
// Contract: each returns the kernel's result, -errno on failure; errno is
// never touched. Async-signal-safe. Elsewhere than x86-64 and AArch64 they
// call libc's syscall(2), which is correct, just one more page.
#pragma once

#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

namespace coproc::detail::sys {

inline long call(long number, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) noexcept {
#if defined(__x86_64__)
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = number;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory", "cc");
    return x0;
#else
    const int saved = errno;
    const long result = ::syscall(number, a, b, c, d, e, f);
    const long out = result == -1 ? -errno : result;
    errno = saved;
    return out;
#endif
}

/// For callers that keep libc's convention: -1 with errno set on failure.
inline long with_errno(long result) noexcept {
    if (result >= 0) return result;
    errno = static_cast<int>(-result);
    return -1;
}

template <class T>
long arg(T* pointer) noexcept {
    return static_cast<long>(reinterpret_cast<std::uintptr_t>(pointer));
}

inline long close(int fd) noexcept { return call(SYS_close, fd); }
inline long getppid() noexcept { return call(SYS_getppid); }
inline long prctl(int option, unsigned long value) noexcept {
    return call(SYS_prctl, option, static_cast<long>(value));
}
inline long munmap(void* address, std::size_t size) noexcept {
    return call(SYS_munmap, arg(address), static_cast<long>(size));
}

// The messenger's socket calls. Unlike libc's, they are not pthread
// cancellation points.
inline long recv(int fd, void* data, std::size_t size, int flags) noexcept {
    return call(SYS_recvfrom, fd, arg(data), static_cast<long>(size), flags, 0, 0);
}
inline long send(int fd, const void* data, std::size_t size, int flags) noexcept {
    return call(SYS_sendto, fd, arg(data), static_cast<long>(size), flags, 0, 0);
}
inline long recvmsg(int fd, ::msghdr* message, int flags) noexcept {
    return call(SYS_recvmsg, fd, arg(message), flags);
}
inline long sendmsg(int fd, const ::msghdr* message, int flags) noexcept {
    return call(SYS_sendmsg, fd, arg(message), flags);
}
/// poll(2) through ppoll (AArch64 has no poll): timeout in ms, < 0 waits forever.
inline long poll(::pollfd* fds, unsigned long count, int timeout_ms) noexcept {
    ::timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000L};
    return call(SYS_ppoll, arg(fds), static_cast<long>(count), timeout_ms < 0 ? 0 : arg(&timeout), 0, 0);
}

/// Empties the calling thread's signal mask.
inline long unblock_all_signals() noexcept {
#if defined(__x86_64__) || defined(__aarch64__)
    const std::uint64_t none = 0;  // the kernel's sigset: 64 bits
    return call(SYS_rt_sigprocmask, SIG_SETMASK, arg(&none), 0, sizeof none);
#else
    sigset_t none;
    sigemptyset(&none);
    return -::pthread_sigmask(SIG_SETMASK, &none, nullptr);
#endif
}

/// Sets `sig`'s disposition to SIG_DFL.
inline long set_default_disposition(int sig) noexcept {
#if defined(__x86_64__) || defined(__aarch64__)
    // The kernel's struct sigaction, the same on both; SIG_DFL needs no
    // restorer and no mask.
    struct {
        long handler;
        unsigned long flags;
        long restorer;
        std::uint64_t mask;
    } action{0 /* SIG_DFL */, 0, 0, 0};
    return call(SYS_rt_sigaction, sig, arg(&action), 0, sizeof action.mask);
#else
    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    return ::sigaction(sig, &action, nullptr) == 0 ? 0 : -errno;
#endif
}

}  // namespace coproc::detail::sys
