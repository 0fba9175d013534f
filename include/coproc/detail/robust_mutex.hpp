// coproc/detail/robust_mutex.hpp — a robust, process-shared mutex that lives
// in shared memory. Compiled in lib/robust_mutex.cpp. Internal.
#pragma once

#include <chrono>
#include <cstddef>

#include <pthread.h>

#include "coproc/detail/deadline.hpp"

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

}  // namespace coproc::detail
