// Worker limits: checked in the host, applied in the child (see worker_limits.hpp).
#include "coproc/worker_limits.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "coproc/error.hpp"

namespace coproc::detail {

namespace {

struct Rlimit {
    int resource;
    const char* name;
    std::optional<std::uint64_t> WorkerLimits::*field;
    rlim_t extra_hard;  // hard = soft + extra (CPU: SIGKILL a second after SIGXCPU)
};
constexpr Rlimit rlimits[] = {
    {RLIMIT_AS, "address_space_bytes", &WorkerLimits::address_space_bytes, 0},
    {RLIMIT_CPU, "cpu_seconds", &WorkerLimits::cpu_seconds, 1},
    {RLIMIT_NOFILE, "open_files", &WorkerLimits::open_files, 0},
};

bool may_raise_limits() noexcept {
    // CAP_SYS_RESOURCE, approximated: root may, others may not.
    return ::geteuid() == 0;
}

}  // namespace

void check_limits(const WorkerLimits& limits) {
    for (const auto& r : rlimits) {
        const auto& value = limits.*(r.field);
        if (!value) continue;
        rlimit current{};
        if (::getrlimit(r.resource, &current) != 0) continue;
        const rlim_t hard = static_cast<rlim_t>(*value) + r.extra_hard;
        if (current.rlim_max != RLIM_INFINITY && hard > current.rlim_max && !may_raise_limits())
            throw SpawnError(fmt::format("coproc: WorkerLimits::{} = {} is above this process's hard limit ({})",
                                         r.name, *value, current.rlim_max));
    }
    if (limits.nice) {
        if (*limits.nice < -20 || *limits.nice > 19)
            throw SpawnError(fmt::format("coproc: WorkerLimits::nice = {} is outside -20..19", *limits.nice));
        errno = 0;
        const int ours = ::getpriority(PRIO_PROCESS, 0);
        if (errno == 0 && *limits.nice < ours && !may_raise_limits())
            throw SpawnError(
                fmt::format("coproc: WorkerLimits::nice = {} is below this process's ({}): lowering it needs privilege",
                            *limits.nice, ours));
    }
    if (!limits.cpus.empty()) {
        cpu_set_t allowed;
        CPU_ZERO(&allowed);
        if (::sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
            for (const int cpu : limits.cpus)
                if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(static_cast<std::size_t>(cpu), &allowed))
                    throw SpawnError(
                        fmt::format("coproc: WorkerLimits::cpus names CPU {}, which this process may not use", cpu));
        }
    }
}

bool apply_limits(const WorkerLimits& limits, char* why, std::size_t why_size) noexcept {
    for (const auto& r : rlimits) {
        const auto& value = limits.*(r.field);
        if (!value) continue;
        const rlimit wanted{static_cast<rlim_t>(*value), static_cast<rlim_t>(*value) + r.extra_hard};
        if (::setrlimit(r.resource, &wanted) != 0) {
            std::snprintf(why, why_size, "coproc: cannot apply WorkerLimits::%s: %s", r.name, std::strerror(errno));
            return false;
        }
    }
    if (limits.nice && ::setpriority(PRIO_PROCESS, 0, *limits.nice) != 0) {
        std::snprintf(why, why_size, "coproc: cannot apply WorkerLimits::nice: %s", std::strerror(errno));
        return false;
    }
    if (!limits.cpus.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (const int cpu : limits.cpus)
            if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(static_cast<std::size_t>(cpu), &set);
        if (::sched_setaffinity(0, sizeof(set), &set) != 0) {
            std::snprintf(why, why_size, "coproc: cannot apply WorkerLimits::cpus: %s", std::strerror(errno));
            return false;
        }
    }
    return true;
}

void apply_limits_or_exit(const WorkerLimits& limits) noexcept {
    if (limits.empty()) return;
    char why[256];
    if (apply_limits(limits, why, sizeof why)) return;
    const std::size_t n = std::strlen(why);
    why[n < sizeof why - 1 ? n : sizeof why - 2] = '\n';
    (void)!::write(2, why, std::min(n + 1, sizeof why - 1));
    ::_exit(125);
}

// "as:cpu:nofile:nice:cpu,cpu,..." with "-" for an unset field.
std::string encode_limits(const WorkerLimits& limits) {
    const auto field = [](const auto& v) { return v ? fmt::format("{}", *v) : std::string("-"); };
    return fmt::format("{}:{}:{}:{}:{}", field(limits.address_space_bytes), field(limits.cpu_seconds),
                       field(limits.open_files), field(limits.nice), fmt::join(limits.cpus, ","));
}

WorkerLimits decode_limits(std::string_view text) {
    const auto malformed = [text] { return SpawnError(fmt::format("coproc: malformed worker limits '{}'", text)); };
    std::vector<std::string_view> fields;
    for (std::size_t start = 0;;) {
        const std::size_t colon = text.find(':', start);
        fields.push_back(text.substr(start, colon == std::string_view::npos ? colon : colon - start));
        if (colon == std::string_view::npos) break;
        start = colon + 1;
    }
    if (fields.size() != 5) throw malformed();
    const auto number = [&](std::string_view f, auto& out) {
        if (f == "-") return;
        typename std::remove_reference_t<decltype(out)>::value_type v{};
        const auto r = std::from_chars(f.data(), f.data() + f.size(), v);
        if (r.ec != std::errc() || r.ptr != f.data() + f.size()) throw malformed();
        out = v;
    };
    WorkerLimits limits;
    number(fields[0], limits.address_space_bytes);
    number(fields[1], limits.cpu_seconds);
    number(fields[2], limits.open_files);
    number(fields[3], limits.nice);
    for (std::size_t start = 0; !fields[4].empty() && start <= fields[4].size();) {
        const std::size_t comma = fields[4].find(',', start);
        const auto piece = fields[4].substr(start, comma == std::string_view::npos ? comma : comma - start);
        std::optional<int> cpu;
        number(piece, cpu);
        if (!cpu) throw malformed();
        limits.cpus.push_back(*cpu);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return limits;
}

}  // namespace coproc::detail
