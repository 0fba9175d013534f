// coproc/detail/shared_region.hpp — an anonymous MAP_SHARED region inherited
// across fork: the memory under SharedValue, SharedArray and SharedMemory.
// Compiled in lib/shared_region.cpp. Internal.
#pragma once

#include <cstddef>

namespace coproc::detail {

/// An anonymous MAP_SHARED region: the same memory in this process and in
/// every process forked after its creation. Unmapped when the last handle in a
/// process goes. Pages are only touched (and so only cost memory) when used.
class SharedRegion {
public:
    explicit SharedRegion(std::size_t size);  // throws SystemError
    ~SharedRegion();
    SharedRegion(const SharedRegion&) = delete;
    SharedRegion& operator=(const SharedRegion&) = delete;
    [[nodiscard]] void* data() const noexcept { return data_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    void* data_;
    std::size_t size_;
};

}  // namespace coproc::detail
