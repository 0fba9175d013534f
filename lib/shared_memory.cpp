// SharedMemory: a Boost.Interprocess map in one anonymous shared mapping.
//
// Boost's segment runs with null mutexes: every access is serialised by our
// own robust store lock instead, because Boost's interprocess_mutex is not
// robust (a process killed inside an allocation would block everyone).
#include "coproc/shared_memory.hpp"

#include "coproc/detail/shared_region.hpp"

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/sync/mutex_family.hpp>

namespace coproc {
namespace detail {
namespace {

namespace bip = boost::interprocess;
using Segment = bip::basic_managed_external_buffer<char, bip::rbtree_best_fit<bip::null_mutex_family>, bip::iset_index>;
using Manager = Segment::segment_manager;
template <class T>
using Alloc = bip::allocator<T, Manager>;
using ShmString = bip::basic_string<char, std::char_traits<char>, Alloc<char>>;
using ShmBytes = bip::vector<char, Alloc<char>>;

struct KeyLess {
    using is_transparent = void;
    static std::string_view view(const ShmString& s) noexcept { return {s.data(), s.size()}; }
    static std::string_view view(std::string_view s) noexcept { return s; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
        return view(a) < view(b);
    }
};
using ValueMap = bip::map<ShmString, ShmBytes, KeyLess, Alloc<std::pair<const ShmString, ShmBytes>>>;
using LockMap = bip::map<ShmString, RobustMutex, KeyLess, Alloc<std::pair<const ShmString, RobustMutex>>>;

// At the start of the mapping; the Boost segment follows it.
struct Header {
    RobustMutex store_lock;
    RobustMutex prepare_lock;
    std::atomic<std::uint32_t> prepared{0};
    std::uint64_t owner_deaths = 0;
    ValueMap* values = nullptr;  // same address in every forked process
    LockMap* locks = nullptr;
};

constexpr std::size_t header_size = (sizeof(Header) + 63) / 64 * 64;

}  // namespace

struct SharedStore {
    explicit SharedStore(std::size_t capacity) : mapping(header_size + capacity) {
        auto* base = static_cast<char*>(mapping.data());
        header = new (base) Header();
        segment = std::make_unique<Segment>(bip::create_only, base + header_size, capacity);
        header->values = segment->construct<ValueMap>(bip::anonymous_instance)(segment->get_segment_manager());
        header->locks = segment->construct<LockMap>(bip::anonymous_instance)(segment->get_segment_manager());
    }
    SharedRegion mapping;
    Header* header = nullptr;
    std::unique_ptr<Segment> segment;
    // Process-local (copied into workers by fork):
    std::vector<std::function<void(SharedMemory&)>> preparers;
    bool preparing = false;
};

namespace {

// Holds the store lock; counts take-overs from dead holders.
class StoreGuard {
public:
    explicit StoreGuard(SharedStore& s) : lock_(s.header->store_lock) {
        lock_.lock();
        if (lock_.owner_died()) ++s.header->owner_deaths;
    }
    ~StoreGuard() { lock_.unlock(); }
    StoreGuard(const StoreGuard&) = delete;
    StoreGuard& operator=(const StoreGuard&) = delete;

private:
    RobustMutex& lock_;
};

template <class F>
auto with_capacity_check(F&& f) {
    try {
        return f();
    } catch (const bip::bad_alloc&) {
        throw CapacityError("coproc::SharedMemory: out of capacity");
    }
}

ShmString shm_string(SharedStore& s, std::string_view v) {
    return ShmString(v.data(), v.size(), s.segment->get_segment_manager());
}

void put(SharedStore& s, std::string_view key, std::string_view bytes) {
    auto& values = *s.header->values;
    // Everything that can run out of memory happens before the map changes.
    if (auto it = values.find(key); it != values.end()) {
        ShmBytes fresh(bytes.begin(), bytes.end(), s.segment->get_segment_manager());
        it->second.swap(fresh);
        return;
    }
    values.emplace(shm_string(s, key), ShmBytes(bytes.begin(), bytes.end(), s.segment->get_segment_manager()));
}

// The part every keyed access shares: under the store lock, f(values, it)
// with `it` the entry of encoded key `k`, or values.end().
template <class F>
auto with_entry(SharedStore& s, std::string_view k, F&& f) {
    const StoreGuard guard(s);
    auto& values = *s.header->values;
    return f(values, values.find(k));
}

}  // namespace
}  // namespace detail

SharedMemory::SharedMemory(SharedMemoryOptions options)
    : store_(std::make_shared<detail::SharedStore>(options.capacity)) {}

SharedMemory::SharedMemory(std::shared_ptr<detail::SharedStore> store, std::string prefix)
    : store_(std::move(store)), prefix_(std::move(prefix)) {}

std::string SharedMemory::key_of(std::string_view key) const {
    // Prefix-free encoding: 'C' + u32 length + name per component, then 'K' + key.
    std::string k = prefix_;
    k += 'K';
    k.append(key);
    return k;
}

SharedMemory SharedMemory::component(std::string_view name) const {
    std::string p = prefix_;
    p += 'C';
    const auto len = static_cast<std::uint32_t>(name.size());
    for (int i = 0; i < 4; ++i) p += static_cast<char>((len >> (8 * i)) & 0xFF);
    p.append(name);
    return SharedMemory(store_, std::move(p));
}

void SharedMemory::add_preparer(std::function<void(SharedMemory&)> preparer) {
    store_->preparers.push_back(std::move(preparer));
}

void SharedMemory::ensure_prepared() const {
    auto& s = *store_;
    if (s.preparing || s.header->prepared.load(std::memory_order_acquire) != 0) return;
    detail::RobustMutex& lock = s.header->prepare_lock;
    lock.lock();  // owner died: its preparers did not finish, so they run again here
    struct Unlock {
        detail::RobustMutex& m;
        ~Unlock() { m.unlock(); }
    } unlock{lock};
    if (s.header->prepared.load(std::memory_order_acquire) != 0) return;
    s.preparing = true;
    try {
        SharedMemory root(store_, std::string());
        for (auto& preparer : s.preparers) preparer(root);
    } catch (...) {
        s.preparing = false;
        throw;
    }
    s.preparing = false;
    s.header->prepared.store(1, std::memory_order_release);
}

std::string SharedMemory::prepared_key(std::string_view key) const {
    ensure_prepared();
    return key_of(key);
}

std::optional<std::string> SharedMemory::get_bytes(std::string_view key) const {
    return detail::with_entry(*store_, prepared_key(key), [](auto& values, auto it) -> std::optional<std::string> {
        if (it == values.end()) return std::nullopt;
        return std::string(it->second.data(), it->second.size());
    });
}

void SharedMemory::set_bytes(std::string_view key, std::string_view bytes) {
    const std::string k = prepared_key(key);
    detail::StoreGuard guard(*store_);
    detail::with_capacity_check([&] { detail::put(*store_, k, bytes); });
}

void SharedMemory::update_bytes(std::string_view key,
                                const std::function<std::string(std::optional<std::string_view>)>& fn) {
    const std::string k = prepared_key(key);
    detail::with_entry(*store_, k, [&](auto& values, auto it) {
        std::optional<std::string_view> current;
        if (it != values.end()) current = std::string_view(it->second.data(), it->second.size());
        const std::string next = fn(current);  // user code: if it throws, nothing changed
        detail::with_capacity_check([&] { detail::put(*store_, k, next); });
    });
}

bool SharedMemory::contains(std::string_view key) const {
    return detail::with_entry(*store_, prepared_key(key), [](auto& values, auto it) { return it != values.end(); });
}

bool SharedMemory::erase(std::string_view key) {
    return detail::with_entry(*store_, prepared_key(key), [](auto& values, auto it) {
        if (it == values.end()) return false;
        values.erase(it);
        return true;
    });
}

std::vector<std::string> SharedMemory::keys() const {
    ensure_prepared();
    const std::string p = prefix_ + 'K';
    std::vector<std::string> out;
    detail::StoreGuard guard(*store_);
    auto& values = *store_->header->values;
    for (auto it = values.lower_bound(std::string_view(p)); it != values.end(); ++it) {
        const std::string_view k(it->first.data(), it->first.size());
        if (k.substr(0, p.size()) != p) break;
        out.emplace_back(k.substr(p.size()));
    }
    return out;
}

std::size_t SharedMemory::size() const { return keys().size(); }

SharedMemory::LockGuard SharedMemory::lock(std::string_view name) {
    auto guard = try_lock_for(name, std::chrono::nanoseconds::max());
    return std::move(*guard);
}

std::optional<SharedMemory::LockGuard> SharedMemory::try_lock_for(std::string_view name,
                                                                  std::chrono::nanoseconds timeout) {
    ensure_prepared();
    std::string k = prefix_;
    k += 'L';
    k.append(name);
    detail::RobustMutex* mutex = nullptr;
    {
        detail::StoreGuard guard(*store_);
        auto& locks = *store_->header->locks;
        auto it = locks.find(std::string_view(k));
        if (it == locks.end())
            it = detail::with_capacity_check([&] { return locks.try_emplace(detail::shm_string(*store_, k)).first; });
        mutex = &it->second;  // map nodes never move, and locks are never erased
    }
    if (timeout == std::chrono::nanoseconds::max()) {
        mutex->lock();
    } else if (!mutex->try_lock_until(detail::deadline_after(timeout).value_or(detail::Clock::time_point::max()))) {
        return std::nullopt;
    }
    return LockGuard(mutex);
}

std::size_t SharedMemory::free_memory() const {
    detail::StoreGuard guard(*store_);
    return store_->segment->get_free_memory();
}

std::size_t SharedMemory::capacity() const { return store_->segment->get_size(); }

std::uint64_t SharedMemory::owner_deaths() const {
    detail::StoreGuard guard(*store_);
    return store_->header->owner_deaths;
}

}  // namespace coproc
