// Large buffers from mmap: see page_alloc.hpp.
#include "coproc/detail/page_alloc.hpp"

#include <malloc.h>
#include <sys/mman.h>

#include <new>

namespace coproc::detail {

void* map_pages(std::size_t bytes) {
    void* pages = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED) throw std::bad_alloc();
    return pages;
}

void unmap_pages(void* pages, std::size_t bytes) noexcept {
    if (pages != nullptr) (void)::munmap(pages, bytes);
}

void release_free_heap() noexcept { (void)::malloc_trim(0); }

}  // namespace coproc::detail
