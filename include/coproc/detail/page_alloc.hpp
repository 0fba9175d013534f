// coproc/detail/page_alloc.hpp — large buffers straight from the kernel, so
// that freeing one gives its memory back at once (malloc keeps freed heap
// memory for reuse, and a drained queue of a million messages would stay
// resident). Compiled in lib/page_alloc.cpp. Internal. Thread-safe.
#pragma once

#include <cstddef>
#include <new>

namespace coproc::detail {

/// Buffers at least this large come from map_pages; smaller ones from the heap.
inline constexpr std::size_t page_alloc_threshold = std::size_t{64} << 10;

/// `bytes` of zero-filled, page-aligned private memory. Throws std::bad_alloc.
[[nodiscard]] void* map_pages(std::size_t bytes);
/// Gives back what map_pages(bytes) returned. Never throws.
void unmap_pages(void* pages, std::size_t bytes) noexcept;

/// A buffer this large that shrinks below it marks a drained burst: the
/// items it held freed their own heap memory too, so release_free_heap() runs.
inline constexpr std::size_t drained_burst_bytes = std::size_t{4} << 20;

/// Asks malloc to give free heap pages back to the kernel (glibc's
/// malloc_trim). Freed small blocks are otherwise kept for reuse for good.
/// Costs time in proportion to the heap; call it rarely. Never throws.
void release_free_heap() noexcept;

/// Typed allocation: map_pages above the threshold, operator new below.
template <class T>
[[nodiscard]] T* allocate_buffer(std::size_t count) {
    const std::size_t bytes = count * sizeof(T);
    if (bytes >= page_alloc_threshold) return static_cast<T*>(map_pages(bytes));
    return static_cast<T*>(::operator new(bytes, std::align_val_t{alignof(T)}));
}
/// Frees what allocate_buffer<T>(count) returned.
template <class T>
void free_buffer(T* buffer, std::size_t count) noexcept {
    const std::size_t bytes = count * sizeof(T);
    if (bytes >= page_alloc_threshold)
        unmap_pages(buffer, bytes);
    else
        ::operator delete(buffer, std::align_val_t{alignof(T)});
}

}  // namespace coproc::detail
