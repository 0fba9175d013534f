// coproc/channel.hpp — channel ids: none (the default, Python's None), a
// 64-bit integer, or a string.
//
//   constexpr int CHANNEL_A = 1;
//   m.send_norequest("hello", CHANNEL_A);     // integer channel
//   m.send_norequest("hi", "results");        // string channel
//   m.send_norequest("x");                    // the none channel
//
// A plain value type: hashable, totally ordered (none < integers < strings),
// formattable as Python's repr (None, 1, 'results'). Thread-safe like a string.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include <fmt/format.h>

namespace coproc {

class Channel {
public:
    /// The none channel.
    Channel() noexcept = default;
    Channel(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor): Python's None

    /// Integer channel. Throws std::out_of_range for unsigned values above INT64_MAX.
    template <std::integral I>
        requires(!std::same_as<I, bool> && !std::same_as<I, char>)
    Channel(I id) : value_(to_int64(id)) {}  // NOLINT(google-explicit-constructor)

    /// Enum channel: stored as its underlying integer.
    template <class E>
        requires std::is_enum_v<E>
    Channel(E id) : Channel(static_cast<std::underlying_type_t<E>>(id)) {}  // NOLINT(google-explicit-constructor)

    /// String channel.
    Channel(std::string name) : value_(std::move(name)) {}         // NOLINT(google-explicit-constructor)
    Channel(std::string_view name) : value_(std::string(name)) {}  // NOLINT(google-explicit-constructor)
    Channel(const char* name) : value_(std::string(name)) {}       // NOLINT(google-explicit-constructor)

    [[nodiscard]] bool is_none() const noexcept { return value_.index() == 0; }
    [[nodiscard]] bool is_integer() const noexcept { return value_.index() == 1; }
    [[nodiscard]] bool is_string() const noexcept { return value_.index() == 2; }
    /// Precondition: is_integer().
    [[nodiscard]] std::int64_t integer() const { return std::get<1>(value_); }
    /// Precondition: is_string().
    [[nodiscard]] const std::string& string() const { return std::get<2>(value_); }

    friend bool operator==(const Channel&, const Channel&) = default;
    friend std::strong_ordering operator<=>(const Channel& a, const Channel& b) {
        // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the comparison with 0
        if (auto c = a.value_.index() <=> b.value_.index(); c != 0) return c;
        if (a.is_integer()) return a.integer() <=> b.integer();
        if (a.is_string()) return a.string().compare(b.string()) <=> 0;
        return std::strong_ordering::equal;
    }

    [[nodiscard]] std::size_t hash() const noexcept { return std::hash<decltype(value_)>{}(value_); }

private:
    template <class I>
    static std::int64_t to_int64(I id) {
        if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
            if (id > static_cast<I>(std::numeric_limits<std::int64_t>::max()))
                throw std::out_of_range("coproc::Channel: integer id above INT64_MAX");
        }
        return static_cast<std::int64_t>(id);
    }

    std::variant<std::monostate, std::int64_t, std::string> value_;
};

}  // namespace coproc

template <>
struct std::hash<coproc::Channel> {
    std::size_t operator()(const coproc::Channel& c) const noexcept { return c.hash(); }
};

/// Formats as Python's repr: None, 42, 'name'.
template <>
struct fmt::formatter<coproc::Channel> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::Channel& c, Ctx& ctx) const {
        if (c.is_none()) return fmt::format_to(ctx.out(), "None");
        if (c.is_integer()) return fmt::format_to(ctx.out(), "{}", c.integer());
        return fmt::format_to(ctx.out(), "'{}'", c.string());
    }
};
