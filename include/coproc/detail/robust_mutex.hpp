// coproc/detail/robust_mutex.hpp — a robust, process-shared mutex that lives
// in shared memory, and an anonymous shared mapping inherited across fork.
// Compiled in lib/shared_state.cpp. Internal.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include <pthread.h>

#include "coproc/detail/fd.hpp"

namespace coproc::detail {

/// pthread mutex with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST: when
/// its holder dies, the kernel hands it to the next acquirer, which is told
/// (owner_died()). Construct it in shared memory; never copy or move it.
class RobustMutex {
public:
    RobustMutex();  // throws SystemError
    ~RobustMutex();
    RobustMutex(const RobustMutex&) = delete;
    RobustMutex& operator=(const RobustMutex&) = delete;

    /// Blocks until acquired. Throws Error if the mutex is unrecoverable.
    void lock() {
        const int rc = pthread_mutex_lock(&mutex_);
        if (rc == 0) [[likely]] {
            owner_died_ = false;
            return;
        }
        (void)acquired(rc);
    }
    bool try_lock() {
        const int rc = pthread_mutex_trylock(&mutex_);
        if (rc == 0) [[likely]] {
            owner_died_ = false;
            return true;
        }
        return acquired(rc);
    }
    /// False if not acquired by the deadline.
    bool try_lock_until(Clock::time_point deadline);
    void unlock() noexcept { (void)pthread_mutex_unlock(&mutex_); }
    /// True if the current holder got the lock from a holder that died
    /// holding it (meaningful only while held).
    [[nodiscard]] bool owner_died() const noexcept { return owner_died_; }

private:
    bool acquired(int rc);  // the slow path: EOWNERDEAD, timeouts, errors
    pthread_mutex_t mutex_;
    bool owner_died_ = false;
};

/// An anonymous MAP_SHARED region: the same memory in this process and in
/// every process forked after its creation. Unmapped when the last handle in a
/// process goes. Pages are only touched (and so only cost memory) when used.
class SharedMapping {
public:
    explicit SharedMapping(std::size_t size);  // throws SystemError
    ~SharedMapping();
    SharedMapping(const SharedMapping&) = delete;
    SharedMapping& operator=(const SharedMapping&) = delete;
    [[nodiscard]] void* data() const noexcept { return data_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    void* data_;
    std::size_t size_;
};

}  // namespace coproc::detail
