// The per-process registries of fds and MADV_DONTFORK ranges a forked child
// closes and unmaps (see fork_registry.hpp).
#include "coproc/detail/fork_registry.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <span>
#include <new>
#include <vector>

#include "inline_syscall.hpp"

namespace coproc::detail {

namespace {
// Entries that belong to one process: a forked child starts with an empty
// list (what it inherited names fds it closed and ranges it unmapped at
// start-up; fd numbers may be reused since). Thread-safe.
template <class T>
class ProcessList {
public:
    void add(T item) {
        const std::lock_guard lock(mutex_);
        forget_inherited(::getpid());
        items_.push_back(item);
    }
    // No pid check (getpid is a system call): in a process that inherited
    // the list, removing an entry it names is as right as keeping it.
    template <class Pred>
    void remove_first(Pred pred) noexcept {
        const std::lock_guard lock(mutex_);
        if (auto it = std::find_if(items_.begin(), items_.end(), pred); it != items_.end()) items_.erase(it);
    }
    std::vector<T> snapshot() {
        std::vector<T> items = lock_and_snapshot(::getpid());
        unlock();
        return items;
    }
    // For a fork: returns the entries and stays locked until unlock() (in
    // the parent) or reset_in_child(). Room for `spare` more entries is
    // reserved first, for the child.
    std::vector<T> lock_and_snapshot(pid_t self, std::size_t spare = 0) {
        mutex_.lock();
        try {
            forget_inherited(self);
            items_.reserve(items_.size() + spare);
            return items_;
        } catch (...) {
            mutex_.unlock();
            throw;
        }
    }
    void unlock() noexcept { mutex_.unlock(); }
    // In a forked child, whose one thread is the one that locked: the lock
    // is made anew instead of unlocked (no libc call: its unlock would be
    // one more code page to fault in) and the list holds `keep`, owned by
    // `self`. No allocation (the parent reserved the room).
    void reset_in_child(pid_t self, std::span<const T> keep) noexcept {
        new (&mutex_) std::mutex;
        items_.clear();
        for (const T& item : keep) {
            if (items_.size() < items_.capacity()) items_.push_back(item);
        }
        owner_ = self;
    }

private:
    void forget_inherited(pid_t self) {
        if (owner_ != self) {
            items_.clear();
            owner_ = self;
        }
    }
    std::mutex mutex_;
    std::vector<T> items_;
    pid_t owner_ = 0;
};

// Leaked: children and late destructors may still use them. One object in
// one page, so a forked child that unlocks and updates both writes one heap
// page (each is a copy-on-write fault there). A 1 KiB block of its own, so
// no other heap object shares its page and is written alongside it.
struct alignas(1024) Registries {
    ProcessList<int> fds;
    ProcessList<DontforkRange> ranges;
};
static_assert(sizeof(Registries) <= 1024, "one aligned block never straddles a page");
Registries& registries() {
    static auto* r = new Registries;
    return *r;
}
ProcessList<int>& fd_list() { return registries().fds; }
ProcessList<DontforkRange>& range_list() { return registries().ranges; }
}  // namespace

std::vector<int> registered_fds() { return fd_list().snapshot(); }

char* map_shared_dontfork(int fd, std::size_t size) noexcept {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) return nullptr;
    (void)::madvise(p, size, MADV_DONTFORK);
    try {
        range_list().add({p, size});
    } catch (...) {  // bad_alloc: unrecorded, which only slows valgrind down
    }
    return static_cast<char*>(p);
}

void unmap_shared_dontfork(void* addr, std::size_t size) noexcept {
    range_list().remove_first([addr](const DontforkRange& d) { return d.addr == addr; });
    (void)::munmap(addr, size);
}

std::vector<DontforkRange> dontfork_ranges() { return range_list().snapshot(); }

RegistrySnapshot::RegistrySnapshot() : pid(::getpid()) {
    fds = fd_list().lock_and_snapshot(pid, 2);  // room for the child's two
    try {
        ranges = range_list().lock_and_snapshot(pid);
    } catch (...) {
        fd_list().unlock();
        throw;
    }
    held_ = true;
}

void RegistrySnapshot::release() noexcept {
    if (!std::exchange(held_, false)) return;
    range_list().unlock();
    fd_list().unlock();
}

void RegistrySnapshot::reset_in_child(int channel_fd, int side_fd) noexcept {
    if (!std::exchange(held_, false)) return;
    const auto self = static_cast<pid_t>(sys::call(SYS_getpid));
    const int keep[] = {channel_fd, side_fd};
    fd_list().reset_in_child(self, std::span<const int>(keep, side_fd >= 0 ? 2 : 1));
    range_list().reset_in_child(self, {});
}

FdRegistration::FdRegistration(int fd) : fd_(fd) { fd_list().add(fd); }

FdRegistration& FdRegistration::operator=(FdRegistration&& other) noexcept {
    if (this != &other) {
        reset();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

void FdRegistration::reset() noexcept {
    if (fd_ < 0) return;
    const int fd = fd_;
    fd_list().remove_first([fd](int registered) { return registered == fd; });
    fd_ = -1;
}

}  // namespace coproc::detail
