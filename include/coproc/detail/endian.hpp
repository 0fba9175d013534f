// coproc/detail/endian.hpp — little-endian loads and stores for the wire
// formats (frame headers, shared-memory descriptors). Internal.
#pragma once

#include <bit>
#include <cstring>
#include <type_traits>

namespace coproc::detail {

/// Stores `value` at `p` as little-endian (one store on little-endian hosts).
template <class U>
    requires std::is_unsigned_v<U>
inline void put_le(char* p, U value) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(p, &value, sizeof(U));
    } else {
        for (std::size_t i = 0; i < sizeof(U); ++i) p[i] = static_cast<char>((value >> (8 * i)) & 0xFFU);
    }
}

/// Loads a little-endian `U` from `p` (unaligned is fine).
template <class U>
    requires std::is_unsigned_v<U>
[[nodiscard]] inline U get_le(const char* p) noexcept {
    U value = 0;
    if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(&value, p, sizeof(U));
    } else {
        for (std::size_t i = 0; i < sizeof(U); ++i)
            value |= static_cast<U>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return value;
}

}  // namespace coproc::detail
