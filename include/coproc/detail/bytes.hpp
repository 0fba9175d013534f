// coproc/detail/bytes.hpp — a move-only byte buffer for queued payloads:
// small payloads live inline (no allocation per message), large ones on the
// heap without being zero-filled first. Internal.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace coproc::detail {

class Bytes {
public:
    static constexpr std::size_t inline_capacity = 72;

    Bytes() noexcept = default;
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
    [[nodiscard]] std::size_t heap_capacity() const noexcept { return heap_ ? capacity_ : 0; }
    static Bytes copy_of(std::string_view s) {
        Bytes b = uninitialized(s.size());
        if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
        return b;
    }

    Bytes(Bytes&& other) noexcept
        : size_(std::exchange(other.size_, 0)), capacity_(std::exchange(other.capacity_, 0)), heap_(std::move(other.heap_)) {
        if (!heap_ && size_ != 0) std::memcpy(inline_, other.inline_, size_);
    }
    Bytes& operator=(Bytes&& other) noexcept {
        if (this != &other) {
            size_ = std::exchange(other.size_, 0);
            capacity_ = std::exchange(other.capacity_, 0);
            heap_ = std::move(other.heap_);
            if (!heap_ && size_ != 0) std::memcpy(inline_, other.inline_, size_);
        }
        return *this;
    }
    Bytes(const Bytes&) = delete;
    Bytes& operator=(const Bytes&) = delete;
    ~Bytes() = default;

    [[nodiscard]] char* data() noexcept { return heap_ ? heap_.get() : inline_; }
    [[nodiscard]] const char* data() const noexcept { return heap_ ? heap_.get() : inline_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::string_view view() const noexcept { return {data(), size_}; }

private:
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
    std::unique_ptr<char[]> heap_;
    char inline_[inline_capacity];
};

}  // namespace coproc::detail
