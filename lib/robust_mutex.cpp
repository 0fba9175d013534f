// Robust process-shared mutexes.
#include <pthread.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "coproc/detail/robust_mutex.hpp"
#include "coproc/detail/unique_fd.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

RobustMutex::RobustMutex() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    const int rc = pthread_mutex_init(&mutex_, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) throw_system_error(rc, "pthread_mutex_init");
}

RobustMutex::~RobustMutex() { (void)pthread_mutex_destroy(&mutex_); }

bool RobustMutex::acquired(int rc) {
    if (rc == 0) {
        owner_died_ = false;
        return true;
    }
    if (rc == EOWNERDEAD) {
        // The holder died inside its critical section: we hold the lock now.
        // Mark it usable again; the caller learns it through owner_died().
        (void)pthread_mutex_consistent(&mutex_);
        owner_died_ = true;
        return true;
    }
    if (rc == EBUSY || rc == ETIMEDOUT) return false;
    if (rc == ENOTRECOVERABLE) throw Error("coproc: shared lock is not recoverable");
    throw_system_error(rc, "pthread_mutex_lock");
}

bool RobustMutex::try_lock_until(Clock::time_point deadline) {
    // steady_clock is CLOCK_MONOTONIC on Linux.
    const auto since_epoch = deadline.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(secs.count());
    ts.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    return acquired(pthread_mutex_clocklock(&mutex_, CLOCK_MONOTONIC, &ts));
}

}  // namespace coproc::detail
