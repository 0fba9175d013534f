// Signals and short I/O: injected EINTR, EAGAIN and 1-byte reads/writes through
// the syscall seam, and real signals (a user SIGCHLD handler and a 1 ms
// interval timer) interrupting every blocking call.
#include <catch2/catch.hpp>

#include "syscall_seam.hpp"
#include <coproc/worker_resource.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/time.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Channel;

namespace {

std::atomic<unsigned> g_calls{0};

// The side channel is SOCK_SEQPACKET: the kernel never cuts its datagrams,
// and one the sender has written is there, so the fakes only interrupt it.
bool is_seqpacket(int fd) {
    int type = 0;
    socklen_t len = sizeof type;
    return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET;
}

// Every third call fails with EINTR, every fifth recv with EAGAIN; transfers
// are cut to a few bytes.
long flaky_recv(int fd, void* data, std::size_t size, int flags) {
    const unsigned n = g_calls.fetch_add(1);
    if (n % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    if (n % 5 == 0) {
        errno = EAGAIN;
        return -1;
    }
    return coproc::detail::real_syscalls().recv(fd, data, std::min<std::size_t>(size, 1 + n % 7), flags);
}
long flaky_recvmsg(int fd, msghdr* message, int flags) {
    const unsigned n = g_calls.fetch_add(1);
    if (n % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    if (is_seqpacket(fd)) return coproc::detail::real_syscalls().recvmsg(fd, message, flags);
    if (n % 5 == 0) {
        errno = EAGAIN;
        return -1;
    }
    // A short read: the first segment only, cut to a few bytes.
    iovec first = message->msg_iov[0];
    first.iov_len = std::min<std::size_t>(first.iov_len, 1 + n % 7);
    msghdr shorter = *message;
    shorter.msg_iov = &first;
    shorter.msg_iovlen = 1;
    const long r = coproc::detail::real_syscalls().recvmsg(fd, &shorter, flags);
    message->msg_controllen = shorter.msg_controllen;
    message->msg_flags = shorter.msg_flags;
    return r;
}
long flaky_send(int fd, const void* data, std::size_t size, int flags) {
    const unsigned n = g_calls.fetch_add(1);
    if (n % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    return coproc::detail::real_syscalls().send(fd, data, std::min<std::size_t>(size, 1 + n % 11), flags);
}
long flaky_sendmsg(int fd, const msghdr* message, int flags) {
    const unsigned n = g_calls.fetch_add(1);
    if (n % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    if (is_seqpacket(fd)) return coproc::detail::real_syscalls().sendmsg(fd, message, flags);
    // A short write: part of the first non-empty segment (with any attached fd).
    std::size_t i = 0;
    while (i + 1 < message->msg_iovlen && message->msg_iov[i].iov_len == 0) ++i;
    iovec part = message->msg_iov[i];
    part.iov_len = std::min<std::size_t>(part.iov_len, 1 + n % 11);
    msghdr shorter = *message;
    shorter.msg_iov = &part;
    shorter.msg_iovlen = 1;
    return coproc::detail::real_syscalls().sendmsg(fd, &shorter, flags);
}
int flaky_poll(pollfd* fds, unsigned long count, int timeout_ms) {
    if (g_calls.fetch_add(1) % 2 == 0) {
        errno = EINTR;
        return -1;
    }
    return coproc::detail::real_syscalls().poll(fds, count, timeout_ms);
}

struct FlakySyscalls {
    FlakySyscalls() {
        coproc::detail::syscalls() = {&flaky_recv, &flaky_recvmsg, &flaky_send, &flaky_sendmsg, &flaky_poll};
    }
    ~FlakySyscalls() { coproc::detail::reset_syscalls(); }
};

std::atomic<unsigned> g_signals{0};
void count_signal(int) { g_signals.fetch_add(1); }

// A user's SIGCHLD handler plus a SIGALRM every millisecond, both without
// SA_RESTART, so blocking calls really see EINTR.
struct SignalStorm {
    struct sigaction old_chld {
    }, old_alrm{};
    SignalStorm() {
        struct sigaction sa {};
        sa.sa_handler = &count_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        ::sigaction(SIGCHLD, &sa, &old_chld);
        ::sigaction(SIGALRM, &sa, &old_alrm);
        itimerval every_ms{{0, 1000}, {0, 1000}};
        ::setitimer(ITIMER_REAL, &every_ms, nullptr);
    }
    ~SignalStorm() {
        itimerval off{};
        ::setitimer(ITIMER_REAL, &off, nullptr);
        ::sigaction(SIGCHLD, &old_chld, nullptr);
        ::sigaction(SIGALRM, &old_alrm, nullptr);
    }
};

void echo(coproc::PriorityMessenger<std::string>& m) {
    coproc::test::child_watchdog();
    for (;;) m.send_reply(m.receive_blocking());
}

}  // namespace

TEST_CASE("injected EINTR, EAGAIN and short reads/writes leave every message intact", "[signals]") {
    auto [worker, host] = coproc::PriorityMessenger<std::string>::new_pair();
    const FlakySyscalls flaky;
    std::thread peer([&w = worker] {
        try {
            for (;;) w.send_reply(w.receive_blocking(10s) + "!");
        } catch (const coproc::ResourceRequestedClose&) {
        }
    });
    for (int i = 0; i < 300; ++i)
        host.send_request(std::string(static_cast<std::size_t>(i * 37 % 1000), 'a') + std::to_string(i));
    int i = 0;
    for (auto& reply : host.receive_remaining(Channel{}, 10s)) {
        CHECK(reply == std::string(static_cast<std::size_t>(i * 37 % 1000), 'a') + std::to_string(i) + "!");
        ++i;
    }
    CHECK(i == 300);
    host.send_close_request();
    peer.join();
    CHECK(g_calls.load() > 1000);
}

TEST_CASE("short reads and writes around descriptors passed with shared-memory payloads", "[signals]") {
    coproc::MessengerOptions options;
    options.shared_memory_threshold = 4096;
    options.shared_memory_limit = std::size_t{8} << 20;  // some fall back to the socket
    auto [worker, host] = coproc::PriorityMessenger<std::string>::new_pair(options);
    const FlakySyscalls flaky;
    const auto payload = [](int i) {
        return std::string(static_cast<std::size_t>(i) * 7919 % 300'000, static_cast<char>('a' + i % 26)) +
               std::to_string(i);
    };
    std::thread peer([&w = worker] {
        try {
            for (;;) w.send_reply(w.receive_blocking(10s) + "!");
        } catch (const coproc::ResourceRequestedClose&) {
        }
    });
    for (int i = 0; i < 60; ++i) host.send_request(payload(i));
    int i = 0;
    for (auto& reply : host.receive_remaining(Channel{}, 10s)) {
        CHECK(reply == payload(i) + "!");
        ++i;
    }
    CHECK(i == 60);
    CHECK(host.link().shared_memory_mapped() > 0);
    host.send_close_request();
    peer.join();
}

TEST_CASE("a SIGCHLD handler and a 1 ms interval timer do not disturb any blocking call", "[signals]") {
    const SignalStorm storm;
    const unsigned before = g_signals.load();
    {
        coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(echo);
        auto& m = w.messenger();
        for (int round = 0; round < 20; ++round) {
            for (int i = 0; i < 50; ++i) m.send_request(std::string(static_cast<std::size_t>(i * 1000), 'x'));
            int n = 0;
            for (auto& reply : m.receive_remaining(Channel{}, 10s))
                CHECK(reply.size() == static_cast<std::size_t>(n++ * 1000));
            CHECK(n == 50);
        }
        // A timed wait interrupted every millisecond still waits its whole timeout, not more than needed.
        const auto start = std::chrono::steady_clock::now();
        CHECK_THROWS_AS(m.receive_blocking(Channel{"quiet"}, 50ms), coproc::Timeout);
        CHECK(std::chrono::steady_clock::now() - start >= 50ms);
        CHECK(w.join(10s).success());
    }
    {
        coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(echo);
        CHECK(w.terminate(10s).signaled());
    }
    {
        coproc::WorkerOptions options;
        options.close_grace = 20ms;
        coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(options, [](auto& m) {
            coproc::test::child_watchdog();
            ::signal(SIGTERM, SIG_IGN);
            m.send_norequest("ready");
            for (;;) ::pause();
        });
        CHECK(w.messenger().receive_blocking(10s) == "ready");
    }  // destructor: close request, SIGTERM ignored, SIGKILL — all under the storm
    CHECK(g_signals.load() - before > 10);
}
