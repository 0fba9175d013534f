#include "support.hpp"

#include <dirent.h>
#include <sched.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

namespace coproc::test {

std::set<int> open_fds() {
    std::set<int> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return fds;
    const int own = ::dirfd(dir);
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        const int fd = std::atoi(entry->d_name);
        if (fd != own) fds.insert(fd);
    }
    ::closedir(dir);
    return fds;
}

void child_watchdog(unsigned seconds) { ::alarm(seconds); }

bool process_gone(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH; }

bool not_our_child(long pid) { return ::waitpid(static_cast<pid_t>(pid), nullptr, WNOHANG) == -1 && errno == ECHILD; }

bool wait_gone(long pid, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!process_gone(pid)) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        // Polling a condition under a deadline (not synchronisation by sleep):
        // another process's death has no fd we could wait on here.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

std::string pattern(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed * 7919 + (i >> 12)) & 0xFF);
    return s;
}

std::string limits_report() {
    const auto soft = [](int resource) {
        rlimit r{};
        (void)::getrlimit(resource, &r);
        return r.rlim_cur == RLIM_INFINITY ? std::string("inf") : std::to_string(r.rlim_cur);
    };
    std::string cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
            if (CPU_ISSET(static_cast<std::size_t>(cpu), &set)) cpus += (cpus.empty() ? "" : ",") + std::to_string(cpu);
    }
    return "nofile=" + soft(RLIMIT_NOFILE) + " cpu=" + soft(RLIMIT_CPU) + " as=" + soft(RLIMIT_AS) +
           " nice=" + std::to_string(::getpriority(PRIO_PROCESS, 0)) + " cpus=" + cpus;
}

}  // namespace coproc::test

namespace coproc::test {

long cpu_ticks(long pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the command name (which may hold spaces, so from the last ')').
    const auto close = text.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream fields(text.substr(close + 2));
    std::string skip;
    for (int i = 0; i < 11; ++i) fields >> skip;  // state .. cmajflt: fields 3-13
    long utime = 0, stime = 0;
    if (!(fields >> utime >> stime)) return -1;
    return utime + stime;
}

}  // namespace coproc::test
