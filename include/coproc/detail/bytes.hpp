// coproc/detail/bytes.hpp — a move-only byte buffer for queued payloads:
// small payloads live inline (no allocation per message), large ones on the
// heap without being zero-filled first, and payloads in a shared-memory slot
// are borrowed (the slot is handed back when the buffer dies). Internal.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace coproc::detail {

class Bytes {
public:
    static constexpr std::size_t inline_capacity = 72;

    // User-provided (not `= default`): value-initialisation, as in a queue's
    // emplace, then leaves inline_ alone instead of zero-filling 72 bytes.
    Bytes() noexcept {}  // NOLINT(modernize-use-equals-default)
    /// `size` bytes, contents unspecified (written by the caller).
    static Bytes uninitialized(std::size_t size) {
        Bytes b;
        b.size_ = size;
        if (size > inline_capacity) {
            b.heap_.reset(new char[size]);  // default-init: no zero fill
            b.capacity_ = size;
        }
        return b;
    }
    /// Reuses this buffer for `size` bytes if it is big enough (contents unspecified).
    [[nodiscard]] bool reuse_for(std::size_t size) noexcept {
        if (!heap_ || size > capacity_ || size <= inline_capacity) return false;
        size_ = size;
        return true;
    }
    /// Borrows `size` bytes at `data` (a shared-memory slot's payload); on
    /// destruction stores 0 into `busy_flag` (release order), freeing the slot.
    static Bytes borrowed(char* data, std::size_t size, std::uint32_t* busy_flag) noexcept {
        Bytes b;
        b.size_ = size;
        b.borrowed_ = data;
        b.busy_flag_ = busy_flag;
        return b;
    }
    [[nodiscard]] std::size_t heap_capacity() const noexcept { return heap_ ? capacity_ : 0; }
    [[nodiscard]] bool is_borrowed() const noexcept { return borrowed_ != nullptr; }
    /// Copies `s` into an empty inline buffer. Requires s.size() <= inline_capacity.
    void assign_inline(std::string_view s) noexcept {
        size_ = s.size();
        if (!s.empty()) std::memcpy(inline_, s.data(), s.size());
    }
    static Bytes copy_of(std::string_view s) {
        Bytes b = uninitialized(s.size());
        if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
        return b;
    }

    Bytes(Bytes&& other) noexcept
        : size_(std::exchange(other.size_, 0)),
          capacity_(std::exchange(other.capacity_, 0)),
          heap_(std::move(other.heap_)),
          borrowed_(std::exchange(other.borrowed_, nullptr)),
          busy_flag_(std::exchange(other.busy_flag_, nullptr)) {
        if (!heap_ && !borrowed_) copy_inline(other);
    }
    Bytes& operator=(Bytes&& other) noexcept {
        if (this != &other) {
            give_back();
            size_ = std::exchange(other.size_, 0);
            capacity_ = std::exchange(other.capacity_, 0);
            heap_ = std::move(other.heap_);
            borrowed_ = std::exchange(other.borrowed_, nullptr);
            busy_flag_ = std::exchange(other.busy_flag_, nullptr);
            if (!heap_ && !borrowed_) copy_inline(other);
        }
        return *this;
    }
    Bytes(const Bytes&) = delete;
    Bytes& operator=(const Bytes&) = delete;
    ~Bytes() { give_back(); }

    [[nodiscard]] char* data() noexcept { return heap_ ? heap_.get() : borrowed_ != nullptr ? borrowed_ : inline_; }
    [[nodiscard]] const char* data() const noexcept {
        return heap_ ? heap_.get() : borrowed_ != nullptr ? borrowed_ : inline_;
    }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::string_view view() const noexcept { return {data(), size_}; }

private:
    // The whole inline array, whatever the size: a fixed-size copy compiles
    // to a few vector moves instead of a call (bytes past size_ are never read).
    void copy_inline(const Bytes& other) noexcept { std::memcpy(inline_, other.inline_, inline_capacity); }
    void give_back() noexcept {
        // The sender reads the flag before reusing the slot: release order so
        // our reads of the payload happen before its next writes.
        if (busy_flag_ != nullptr) std::atomic_ref<std::uint32_t>(*busy_flag_).store(0, std::memory_order_release);
        busy_flag_ = nullptr;
        borrowed_ = nullptr;
    }

    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
    std::unique_ptr<char[]> heap_;
    char* borrowed_ = nullptr;
    std::uint32_t* busy_flag_ = nullptr;
    char inline_[inline_capacity];
};

/// Large byte runs (a big string's or vector's contents) an encoder leaves in
/// the message instead of copying them into the buffer: run i belongs at
/// offset runs[i].at of the buffer. The sender writes buffer and runs with one
/// gathering send, or copies them once into shared memory. The message must
/// outlive the send.
struct Gather {
    struct Run {
        std::size_t at;
        const char* data;
        std::size_t size;
    };
    static constexpr std::size_t min_run = std::size_t{16} * 1024;  // smaller runs are cheaper to copy
    std::vector<Run> runs;
    std::size_t bytes = 0;  // sum of the runs' sizes
    void clear() noexcept {
        runs.clear();
        bytes = 0;
    }
};

}  // namespace coproc::detail
