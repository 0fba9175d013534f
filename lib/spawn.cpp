// Spawn mode: a worker that is an executable of its own. The host starts it
// with posix_spawn, handing over its end of the link as fds 3 and 4; the
// program takes them back with spawned_channel() (through coproc::worker_main).
//
// Why posix_spawn and not fork + exec (or Boost.Process v1, which forks):
// glibc's posix_spawn runs the child on a vfork (CLONE_VM | CLONE_VFORK) and
// execs at once, so nothing of this process -- no lock another thread holds,
// no atfork handler -- ever runs in the child. That is the point of spawn
// mode: it is safe from a multi-threaded host. It also reports a failed exec
// as an error number, closes fds with closefrom and resets signals itself.
#include "coproc/detail/spawn.hpp"

#include "coproc/detail/output_capture.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace coproc::detail {
namespace {

// The environment variable that tells a spawned program it is a worker:
// "1:<host pid>:<parent-death signal>:<exit pipe fd or -1>" followed by
// ":<value>" for each MessengerOptions field, in for_each_option's order.
// The link itself is always at fds 3 (stream) and 4 (side channel).
constexpr std::string_view env_name = "COPROC_WORKER";
constexpr std::string_view limits_env_name = "COPROC_WORKER_LIMITS";
constexpr std::string_view stdout_env_name = "COPROC_WORKER_STDOUT";
constexpr int stream_fd_number = 3;
constexpr int side_fd_number = 4;
constexpr int exit_fd_number = 5;

// "NAME" of a "NAME=value" environment entry.
std::string_view name_of(std::string_view entry) { return entry.substr(0, entry.find('=')); }

// posix_spawn's functions return an error number instead of setting errno.
void check_spawn(int rc, const char* what) {
    if (rc != 0) throw_system_error(rc, what);
}

// RAII for posix_spawn's two attribute objects, each with its own init and
// destroy functions.
template <class T, int (*init)(T*), int (*destroy)(T*)>
struct SpawnObject {
    T object{};
    SpawnObject() { check_spawn(init(&object), "posix_spawn: initialising its attributes"); }
    ~SpawnObject() { (void)destroy(&object); }
    SpawnObject(const SpawnObject&) = delete;
    SpawnObject& operator=(const SpawnObject&) = delete;
};
using SpawnActions =
    SpawnObject<posix_spawn_file_actions_t, ::posix_spawn_file_actions_init, ::posix_spawn_file_actions_destroy>;
using SpawnAttributes = SpawnObject<posix_spawnattr_t, ::posix_spawnattr_init, ::posix_spawnattr_destroy>;

// A copy of `fd` numbered above the fds the child will use, so that no
// dup2 below overwrites the source of a later one.
UniqueFd above_child_fds(int fd) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, exit_fd_number + 1);
    if (copy < 0) throw_system_error(errno, "fcntl(F_DUPFD_CLOEXEC)");
    return UniqueFd(copy);
}

}  // namespace

std::unique_ptr<ChildProcess> spawn_process(const std::string& path, const std::vector<std::string>& args,
                                            const std::vector<std::string>& env, const std::string& working_directory,
                                            int channel_fd, int side_fd, const SpawnSettings& settings) {
    for (const auto& entry : env) {
        const auto eq = entry.find('=');
        if (eq == std::string::npos || eq == 0)
            throw std::invalid_argument(fmt::format("coproc: environment entry '{}' is not NAME=value", entry));
        if (name_of(entry) == env_name)
            throw std::invalid_argument(fmt::format("coproc: {} is set by coproc itself", env_name));
    }
    const UniqueFd stream = above_child_fds(channel_fd);
    const UniqueFd side = above_child_fds(side_fd);
    // The write end too is moved above the child's fds (it goes to fd 5).
    auto [exit_read, low_exit_write] = ChildProcess::exit_pipe();
    UniqueFd exit_write = low_exit_write ? above_child_fds(low_exit_write.get()) : UniqueFd();
    low_exit_write.reset();
    // Likewise the output sinks' fds, which may sit at 3, 4 or 5.
    const UniqueFd out = settings.stdout_fd >= 0 ? above_child_fds(settings.stdout_fd) : UniqueFd();
    const UniqueFd err = settings.stderr_fd >= 0 ? above_child_fds(settings.stderr_fd) : UniqueFd();

    // dup2 onto another number clears FD_CLOEXEC on the copy: these survive
    // the exec; everything above them is closed (coproc's fds are all
    // close-on-exec already; this also catches the user's).
    SpawnActions fa;
    check_spawn(::posix_spawn_file_actions_adddup2(&fa.object, stream.get(), stream_fd_number), "posix_spawn adddup2");
    check_spawn(::posix_spawn_file_actions_adddup2(&fa.object, side.get(), side_fd_number), "posix_spawn adddup2");
    if (exit_write)
        check_spawn(::posix_spawn_file_actions_adddup2(&fa.object, exit_write.get(), exit_fd_number),
                    "posix_spawn adddup2");
    if (out) check_spawn(::posix_spawn_file_actions_adddup2(&fa.object, out.get(), 1), "posix_spawn adddup2");
    if (err) check_spawn(::posix_spawn_file_actions_adddup2(&fa.object, err.get(), 2), "posix_spawn adddup2");
    check_spawn(
        ::posix_spawn_file_actions_addclosefrom_np(&fa.object, exit_write ? exit_fd_number + 1 : exit_fd_number),
        "posix_spawn addclosefrom");
    // In the child, before the exec: a relative `path` is found from there.
    if (!working_directory.empty())
        check_spawn(::posix_spawn_file_actions_addchdir_np(&fa.object, working_directory.c_str()),
                    "posix_spawn addchdir");

    // Default dispositions for every signal (an ignored one would stay
    // ignored across exec) and an empty mask, whatever the host set.
    SpawnAttributes sa;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    (void)::posix_spawnattr_setsigdefault(&sa.object, &all);
    (void)::posix_spawnattr_setsigmask(&sa.object, &none);
    (void)::posix_spawnattr_setflags(&sa.object, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    std::vector<char*> argv;
    argv.reserve(args.size() + 2);
    argv.push_back(const_cast<char*>(path.c_str()));  // NOLINT: exec's signature is not const-correct
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));  // NOLINT
    argv.push_back(nullptr);
    // Our environment, less what `env` replaces and a COPROC_WORKER of our
    // own (when this process is itself a spawned worker, spawned_channel()
    // removed it already), then `env` and the child's COPROC_WORKER.
    std::string ours = fmt::format("{}=1:{}:{}:{}", env_name, ::getpid(), settings.parent_death_signal,
                                   exit_write ? exit_fd_number : -1);
    for_each_option(settings.messenger,
                    [&ours](std::size_t value) { fmt::format_to(std::back_inserter(ours), ":{}", value); });
    // The limits travel beside it; the program applies them (spawned_channel).
    std::string limits;
    if (!settings.limits.empty()) limits = fmt::format("{}={}", limits_env_name, encode_limits(settings.limits));
    const std::string line_stdout = fmt::format("{}=line", stdout_env_name);
    std::vector<char*> envp;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string_view name = name_of(*e);
        const bool replaced =
            name == env_name || name == limits_env_name || name == stdout_env_name ||
            std::any_of(env.begin(), env.end(), [&](const std::string& entry) { return name_of(entry) == name; });
        if (!replaced) envp.push_back(*e);
    }
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));           // NOLINT
    envp.push_back(const_cast<char*>(ours.c_str()));                                          // NOLINT
    if (!limits.empty()) envp.push_back(const_cast<char*>(limits.c_str()));                   // NOLINT
    if (settings.line_buffer_stdout) envp.push_back(const_cast<char*>(line_stdout.c_str()));  // NOLINT
    envp.push_back(nullptr);

    pid_t pid = -1;
    const bool search = path.find('/') == std::string::npos;
    const int rc = search ? ::posix_spawnp(&pid, path.c_str(), &fa.object, &sa.object, argv.data(), envp.data())
                          : ::posix_spawn(&pid, path.c_str(), &fa.object, &sa.object, argv.data(), envp.data());
    if (rc != 0)
        throw SpawnError(fmt::format("coproc: cannot spawn '{}'{}: {}", path,
                                     working_directory.empty() ? "" : fmt::format(" in '{}'", working_directory),
                                     std::strerror(rc)));
    exit_write.reset();  // only the child holds it now: EOF when it exits
    return ChildProcess::adopt(pid, std::move(exit_read));
}

SpawnedChannel spawned_channel() {
    const char* value = std::getenv(std::string(env_name).c_str());
    if (value == nullptr)
        throw SpawnError(
            fmt::format("coproc: this program was not started by a coproc::WorkerResource ({} is not set)", env_name));
    const auto malformed = [value] { return SpawnError(fmt::format("coproc: malformed {}='{}'", env_name, value)); };
    int version = 0, host = 0, death_signal = 0, exit_fd = -1, used = 0;
    if (std::sscanf(value, "%d:%d:%d:%d%n", &version, &host, &death_signal, &exit_fd, &used) != 4 || version != 1 ||
        host <= 0 || death_signal < 0 || death_signal >= NSIG || (exit_fd != -1 && exit_fd != exit_fd_number))
        throw malformed();
    SpawnSettings settings;
    settings.parent_death_signal = death_signal;
    const char* rest = value + used;
    for_each_option(settings.messenger, [&](std::size_t& field) {
        int n = 0;
        if (std::sscanf(rest, ":%zu%n", &field, &n) != 1) throw malformed();
        rest += n;
    });
    if (*rest != '\0' || settings.messenger.max_frame_size == 0) throw malformed();
    (void)::unsetenv(std::string(env_name).c_str());  // not for the programs we start
    if (const char* limits = std::getenv(std::string(limits_env_name).c_str())) {
        settings.limits = decode_limits(limits);
        (void)::unsetenv(std::string(limits_env_name).c_str());
    }
    if (const char* out = std::getenv(std::string(stdout_env_name).c_str())) {
        settings.line_buffer_stdout = std::string_view(out) == "line";
        (void)::unsetenv(std::string(stdout_env_name).c_str());
    }
    for (const int fd : {stream_fd_number, side_fd_number}) {
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            throw SpawnError(
                fmt::format("coproc: fd {} is not the worker's socket ({} set, but no link)", fd, env_name));
    }
    // The parent-death signal survives exec, but posix_spawn cannot set it:
    // we do, then check the host did not die before (nobody would signal us).
    if (death_signal != 0) (void)::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(death_signal));
    if (::getppid() != host) throw ChannelClosed("coproc: the host exited before its spawned worker started");
    // The host's WorkerLimits, before the target runs (the host checked them).
    if (char why[256]; !apply_limits(settings.limits, why, sizeof why)) throw SpawnError(why);
    // The host reads our stdout line by line (a lines sink): a pipe would
    // make it fully buffered.
    if (settings.line_buffer_stdout) line_buffer_stdout();

    SpawnedChannel channel;
    channel.settings = settings;
    for (const int fd : {stream_fd_number, side_fd_number, exit_fd}) {
        if (fd >= 0) (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);  // programs we start must not inherit them
    }
    channel.stream.reset(stream_fd_number);
    channel.side.reset(side_fd_number);
    channel.stream_registration = FdRegistration(stream_fd_number);
    channel.side_registration = FdRegistration(side_fd_number);
    if (exit_fd >= 0) {
        channel.exit_pipe.reset(exit_fd);
        channel.exit_registration = FdRegistration(exit_fd);
    }
    return channel;
}

bool take_spawned_channel(SpawnedChannel& channel, int& exit_code) {
    try {
        channel = spawned_channel();
        return true;
    } catch (const ChannelClosed&) {
        exit_code = 1;  // the host is gone: nobody to tell
    } catch (const SpawnError& e) {
        // One line, not an uncaught exception's abort and core dump.
        std::fprintf(stderr, "%s; this is a coproc worker program: its host starts it\n", e.what());
        exit_code = 2;
    }
    return false;
}

}  // namespace coproc::detail
