// coproc/detail/fork_registry.hpp — what a forked child must close and unmap:
// the fds coproc holds for other workers and the MADV_DONTFORK ranges of
// payload slots, registered per process. Compiled in lib/fork_registry.cpp.
// Internal.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace coproc::detail {

/// Registers a library-owned fd that every forked child closes (another
/// worker's socket end or pidfd, a shared-memory slot). RAII, move-only. Thread-safe.
class FdRegistration {
public:
    FdRegistration() noexcept = default;
    explicit FdRegistration(int fd);
    FdRegistration(FdRegistration&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    FdRegistration& operator=(FdRegistration&& other) noexcept;
    FdRegistration(const FdRegistration&) = delete;
    FdRegistration& operator=(const FdRegistration&) = delete;
    ~FdRegistration() { reset(); }
    void reset() noexcept;

private:
    int fd_ = -1;
};

/// The registered fds of this process (a forked child closes them).
[[nodiscard]] std::vector<int> registered_fds();

/// An address range mapped with MADV_DONTFORK: a forked child has no such
/// mapping, but tools that model the address space (valgrind) think it does
/// until told, and then scan it fault by fault at exit (~2 s per MiB).
struct DontforkRange {
    void* addr = nullptr;
    std::size_t size = 0;
};
/// Maps `size` bytes of `fd` shared and faulted in now, marks the range
/// MADV_DONTFORK and records it; nullptr (errno set) on failure. Thread-safe.
[[nodiscard]] char* map_shared_dontfork(int fd, std::size_t size) noexcept;
/// Unmaps and forgets a range from map_shared_dontfork. Thread-safe.
void unmap_shared_dontfork(void* addr, std::size_t size) noexcept;
/// The recorded ranges of this process. A forked child munmaps them first
/// thing: a no-op for the kernel, which never copied them.
[[nodiscard]] std::vector<DontforkRange> dontfork_ranges();

/// What a forked child must close and unmap, taken with both registries
/// locked; they stay locked until release() (the parent, right after fork)
/// or reset_in_child(). So another thread cannot deregister an fd and reuse
/// its number, or unmap a range and map something else there, between the
/// snapshot and the fork: the child would close or unmap what is not ours.
/// The other threads' registrations wait for the fork meanwhile.
class RegistrySnapshot {
public:
    RegistrySnapshot();  // throws std::bad_alloc (then nothing stays locked)
    ~RegistrySnapshot() { release(); }
    RegistrySnapshot(const RegistrySnapshot&) = delete;
    RegistrySnapshot& operator=(const RegistrySnapshot&) = delete;
    /// Unlocks (in the parent). Idempotent.
    void release() noexcept;
    /// In the child, whose one thread took the snapshot: the registries'
    /// locks (copied held) are made anew, and the registries hold the
    /// child's own channel (side_fd: -1 for none), as its workers must
    /// close it. No allocation, no libc call. Idempotent.
    void reset_in_child(int channel_fd, int side_fd) noexcept;

    pid_t pid;  // the process that took the snapshot (the parent, after fork)
    std::vector<int> fds;
    std::vector<DontforkRange> ranges;

private:
    bool held_ = false;
};

}  // namespace coproc::detail
