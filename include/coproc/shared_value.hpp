// coproc/shared_value.hpp — typed values and arrays in OS shared memory,
// Python multiprocessing's Value and Array, with locks that survive a holder
// that dies.
//
//   coproc::SharedValue<std::uint64_t> total;          // host, before starting workers
//   coproc::WorkerResource<M> w(target, total);        // the worker gets the same memory
//   {
//       std::lock_guard guard(total.get_lock());       // in any process
//       if (total.get_lock().previous_owner_died()) { /* repair */ }
//       total.value() += 42;
//   }
//   total.fetch_add(1);                                // lock-free, for arithmetic T
//
// Create them in the host before starting the workers that use them: the
// memory is an anonymous shared mapping inherited across fork. Copies of a
// SharedValue are handles to the same memory. T must be trivially copyable.
//
// Thread- and process-safety: value()/operator[] give unsynchronised access
// (hold get_lock(), or use the atomic helpers); load/store take the lock;
// fetch_add and friends are atomic without it.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "coproc/detail/robust_mutex.hpp"
#include "coproc/detail/shared_region.hpp"

namespace coproc {

/// A process-shared lock for std::lock_guard / std::unique_lock /
/// std::scoped_lock. When a process dies holding it, the next acquirer gets it
/// at once and previous_owner_died() is true until it releases it: the state
/// the lock protects may be half-updated and should be checked or repaired.
class SharedLock {
public:
    explicit SharedLock(detail::RobustMutex* mutex) noexcept : mutex_(mutex) {}
    /// Blocks until acquired.
    void lock() { mutex_->lock(); }
    /// Never blocks.
    bool try_lock() { return mutex_->try_lock(); }
    /// Blocks at most `timeout`; false if not acquired.
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return mutex_->try_lock_until(detail::Clock::now() +
                                      std::chrono::duration_cast<detail::Clock::duration>(timeout));
    }
    void unlock() noexcept { mutex_->unlock(); }
    /// While held: true if it was taken over from a holder that died.
    [[nodiscard]] bool previous_owner_died() const noexcept { return mutex_->owner_died(); }

private:
    detail::RobustMutex* mutex_;
};

namespace detail {
template <class T>
constexpr std::size_t shared_alignment() {
    if constexpr (std::is_arithmetic_v<T>)
        return std::max(alignof(T), std::atomic_ref<T>::required_alignment);
    else
        return alignof(T);
}

// Lays out a mutex and `count` T's in one shared mapping.
template <class T>
struct SharedBlock {
    static constexpr std::size_t data_offset =
        (sizeof(RobustMutex) + shared_alignment<T>() - 1) / shared_alignment<T>() * shared_alignment<T>();

    std::shared_ptr<SharedRegion> mapping;
    RobustMutex* mutex = nullptr;
    T* data = nullptr;
    std::size_t count = 0;

    SharedBlock(std::size_t n, const T& initial)
        : mapping(std::make_shared<SharedRegion>(data_offset + sizeof(T) * (n == 0 ? 1 : n))), count(n) {
        auto* base = static_cast<unsigned char*>(mapping->data());
        mutex = new (base) RobustMutex();
        data = reinterpret_cast<T*>(base + data_offset);
        for (std::size_t i = 0; i < n; ++i) new (data + i) T(initial);
    }
};
}  // namespace detail

/// One T in shared memory with a lock. Copyable handle; see the top of the file.
template <class T>
    requires std::is_trivially_copyable_v<T>
class SharedValue {
public:
    /// Maps the memory (host side, before starting workers). Throws SystemError.
    explicit SharedValue(const T& initial = T{}) : block_(1, initial), lock_(block_.mutex) {}

    /// The lock guarding the value. Usable with std::lock_guard.
    [[nodiscard]] SharedLock& get_lock() const noexcept { return lock_; }
    /// Unsynchronised access: hold get_lock() (or only use the atomics).
    [[nodiscard]] T& value() const noexcept { return *block_.data; }
    /// Reads under the lock.
    [[nodiscard]] T load() const {
        std::lock_guard guard(lock_);
        return *block_.data;
    }
    /// Writes under the lock.
    void store(const T& v) const {
        std::lock_guard guard(lock_);
        *block_.data = v;
    }

    // Lock-free atomic helpers (arithmetic T). Never block.
    T fetch_add(T delta) const
        requires std::is_arithmetic_v<T>
    {
        return std::atomic_ref<T>(*block_.data).fetch_add(delta);
    }
    T fetch_sub(T delta) const
        requires std::is_arithmetic_v<T>
    {
        return std::atomic_ref<T>(*block_.data).fetch_sub(delta);
    }
    T exchange(T v) const
        requires std::is_arithmetic_v<T>
    {
        return std::atomic_ref<T>(*block_.data).exchange(v);
    }
    bool compare_exchange(T& expected, T desired) const
        requires std::is_arithmetic_v<T>
    {
        return std::atomic_ref<T>(*block_.data).compare_exchange_strong(expected, desired);
    }
    [[nodiscard]] T atomic_load() const
        requires std::is_arithmetic_v<T>
    {
        return std::atomic_ref<T>(*block_.data).load();
    }
    void atomic_store(T v) const
        requires std::is_arithmetic_v<T>
    {
        std::atomic_ref<T>(*block_.data).store(v);
    }

private:
    detail::SharedBlock<T> block_;
    mutable SharedLock lock_;
};

/// A fixed-size array of T in shared memory with one lock. Copyable handle.
template <class T>
    requires std::is_trivially_copyable_v<T>
class SharedArray {
public:
    /// Maps `size` elements, each `initial`. Throws SystemError.
    explicit SharedArray(std::size_t size, const T& initial = T{}) : block_(size, initial), lock_(block_.mutex) {}

    [[nodiscard]] SharedLock& get_lock() const noexcept { return lock_; }
    [[nodiscard]] std::size_t size() const noexcept { return block_.count; }
    /// Unsynchronised access (hold get_lock()). Precondition: i < size().
    [[nodiscard]] T& operator[](std::size_t i) const noexcept { return block_.data[i]; }
    /// Unsynchronised view of all elements.
    [[nodiscard]] std::span<T> span() const noexcept { return {block_.data, block_.count}; }
    /// Reads/writes element i under the lock. Throws std::out_of_range.
    [[nodiscard]] T load(std::size_t i) const {
        check(i);
        std::lock_guard guard(lock_);
        return block_.data[i];
    }
    void store(std::size_t i, const T& v) const {
        check(i);
        std::lock_guard guard(lock_);
        block_.data[i] = v;
    }
    /// Lock-free for arithmetic T. Throws std::out_of_range.
    T fetch_add(std::size_t i, T delta) const
        requires std::is_arithmetic_v<T>
    {
        check(i);
        return std::atomic_ref<T>(block_.data[i]).fetch_add(delta);
    }

private:
    void check(std::size_t i) const {
        if (i >= block_.count) throw std::out_of_range("coproc::SharedArray index out of range");
    }
    detail::SharedBlock<T> block_;
    mutable SharedLock lock_;
};

}  // namespace coproc
