// coproc/shared_memory.hpp — a key-value store shared by the host and all its
// workers: botogram's shared memory, without its traps.
//
//   coproc::SharedMemory shared;                                   // host, before starting workers
//   shared.add_preparer([](coproc::SharedMemory& m) { m.set("count", 0); });  // runs once, anywhere
//   coproc::WorkerResource<M> w(target, shared);                   // workers get the same store
//   shared.update<int>("count", [](int& n) { ++n; });              // atomic read-modify-write
//   {
//       auto guard = shared.lock("report");                        // a named lock
//       if (guard.previous_owner_died()) { /* repair */ }
//   }
//   auto plugin = shared.component("plugin");                      // an isolated namespace
//
// Values are any cereal-serializable type; what you set is what everyone gets
// (nested containers included: values are copied in and out, never shared by
// reference, in every process alike). Keys are arbitrary byte strings.
//
// Capacity: a fixed-size region (SharedMemoryOptions::capacity, 16 MiB by
// default) mapped once; only touched pages use memory. When a value does not
// fit, CapacityError is thrown and the store is unchanged.
//
// Locks: every operation holds the store's robust lock for its duration;
// named locks are separate robust locks. A process killed while holding any
// of them does not block the others: the next acquirer proceeds and is told.
//
// Thread- and process-safe: every member may be called from any thread of
// any process that has the store (it was created before they were forked).
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "coproc/codec.hpp"
#include "coproc/detail/robust_mutex.hpp"
#include "coproc/error.hpp"

namespace coproc {

/// The store's capacity is exhausted. The operation that threw changed nothing.
class CapacityError : public Error {
public:
    using Error::Error;
};

struct SharedMemoryOptions {
    /// Bytes reserved for keys, values and bookkeeping.
    std::size_t capacity = std::size_t{16} << 20;
};

namespace detail {
struct SharedStore;  // lib/shared_memory.cpp
}

class SharedMemory {
public:
    /// A held named lock; released by its destructor. Move-only.
    class LockGuard {
    public:
        LockGuard(LockGuard&& other) noexcept : mutex_(std::exchange(other.mutex_, nullptr)) {}
        LockGuard& operator=(LockGuard&& other) noexcept {
            if (this != &other) {
                unlock();
                mutex_ = std::exchange(other.mutex_, nullptr);
            }
            return *this;
        }
        LockGuard(const LockGuard&) = delete;
        LockGuard& operator=(const LockGuard&) = delete;
        ~LockGuard() { unlock(); }
        /// True if the lock was taken over from a process that died holding it.
        [[nodiscard]] bool previous_owner_died() const noexcept { return mutex_ != nullptr && mutex_->owner_died(); }
        /// Releases early (idempotent).
        void unlock() noexcept {
            if (mutex_ != nullptr) std::exchange(mutex_, nullptr)->unlock();
        }

    private:
        friend class SharedMemory;
        explicit LockGuard(detail::RobustMutex* mutex) noexcept : mutex_(mutex) {}
        detail::RobustMutex* mutex_;
    };

    /// Maps and initialises the store (host side, before starting workers).
    /// Throws SystemError.
    explicit SharedMemory(SharedMemoryOptions memory_options = {});

    // ---- values. Each call is atomic with respect to all other calls.

    /// The value at `key`. Throws std::out_of_range if there is none,
    /// ProtocolError if it is not a T.
    template <class T>
    [[nodiscard]] T get(std::string_view key) const {
        auto bytes = get_bytes(key);
        if (!bytes) throw std::out_of_range("coproc::SharedMemory: no key '" + std::string(key) + "'");
        return decode<T>(*bytes);
    }
    /// The value at `key`, or `fallback` if there is none.
    template <class T>
    [[nodiscard]] T get_or(std::string_view key, T fallback) const {
        auto bytes = get_bytes(key);
        return bytes ? decode<T>(*bytes) : std::move(fallback);
    }
    /// Stores a copy of `value`. Throws CapacityError when it does not fit.
    template <class T>
    void set(std::string_view key, const T& value) {
        std::string bytes;
        encode_append(bytes, value);
        set_bytes(key, bytes);
    }
    /// Atomic read-modify-write: `fn` gets the current value (T{} if none) as
    /// T& to modify, or returns the new value. Runs under the store's lock, so
    /// keep it short and do not touch the store from inside it. If `fn`
    /// throws, nothing changes. Returns the new value.
    template <class T, class F>
    T update(std::string_view key, F&& fn) {
        T result{};
        update_bytes(key, [&](std::optional<std::string_view> current) {
            T value = current ? decode<T>(*current) : T{};
            if constexpr (std::is_invocable_r_v<T, F&, T&> && !std::is_void_v<std::invoke_result_t<F&, T&>>)
                value = fn(value);
            else
                fn(value);
            std::string bytes;
            encode_append(bytes, value);
            result = std::move(value);
            return bytes;
        });
        return result;
    }
    [[nodiscard]] bool contains(std::string_view key) const;
    /// True if something was erased.
    bool erase(std::string_view key);
    /// The keys of this memory (not of its components), sorted.
    [[nodiscard]] std::vector<std::string> keys() const;
    [[nodiscard]] std::size_t size() const;

    // ---- preparers: run exactly once across the host and all workers, before
    // the first operation on the store anywhere. Register them in the host
    // before starting workers. A preparer that throws is retried by the next
    // operation; one whose process died is run again by the next process.
    void add_preparer(std::function<void(SharedMemory&)> preparer);

    // ---- named locks, scoped to this memory (components have their own).
    /// Blocks until the lock named `name` is held.
    [[nodiscard]] LockGuard lock(std::string_view name);
    /// Blocks at most `timeout`; empty if not acquired.
    [[nodiscard]] std::optional<LockGuard> try_lock_for(std::string_view name, std::chrono::nanoseconds timeout);

    /// An isolated namespace in the same store: no (component, key) pair can
    /// collide with another, whatever characters either contains. Components
    /// nest. Preparers and capacity are shared with the whole store.
    [[nodiscard]] SharedMemory component(std::string_view name) const;

    /// Bytes the store can still allocate (values also need bookkeeping).
    [[nodiscard]] std::size_t free_memory() const;
    [[nodiscard]] std::size_t capacity() const;
    /// How many times a store operation took its lock over from a dead process.
    [[nodiscard]] std::uint64_t owner_deaths() const;

private:
    SharedMemory(std::shared_ptr<detail::SharedStore> store, std::string prefix);
    [[nodiscard]] std::optional<std::string> get_bytes(std::string_view key) const;
    void set_bytes(std::string_view key, std::string_view bytes);
    void update_bytes(std::string_view key, const std::function<std::string(std::optional<std::string_view>)>& fn);
    [[nodiscard]] std::string key_of(std::string_view key) const;
    void ensure_prepared() const;
    // ensure_prepared(), then key_of(key): the start of every keyed access.
    [[nodiscard]] std::string prepared_key(std::string_view key) const;

    std::shared_ptr<detail::SharedStore> store_;
    std::string prefix_;  // encodes the component path
};

}  // namespace coproc
