// Anonymous shared regions (see shared_region.hpp).
#include "coproc/detail/shared_region.hpp"

#include <sys/mman.h>

#include <cerrno>

#include "coproc/detail/unique_fd.hpp"

namespace coproc::detail {

SharedRegion::SharedRegion(std::size_t size) : size_(size) {
    data_ = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (data_ == MAP_FAILED) throw_system_error(errno, "mmap");
}

SharedRegion::~SharedRegion() { (void)::munmap(data_, size_); }

}  // namespace coproc::detail
