// coproc/priority.hpp — how a PriorityMessenger reads a message's priority.
//
//   struct Job { int priority; std::string name; template <class A> void serialize(A& a) { a(priority, name); } };
//   struct Tick { double priority() const { return 0.5; } ... };
//   double coproc_priority(const ThirdParty& t) { return t.urgency; }   // ADL customization point
//
// Lookup order: an ADL function coproc_priority(const T&); a priority()
// member function; a `priority` data member; for std::variant, the held
// alternative's. Arithmetic and enum values are converted to double. Lower is
// served first; a message without a priority gets +inf (back of the queue);
// NaN is treated as +inf. Evaluated on the sending side; it travels in the
// frame header, so receivers order frames without decoding them.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <limits>
#include <type_traits>
#include <variant>

namespace coproc {

/// The priority of a message that has none: +inf, the back of the queue.
inline constexpr double no_priority = std::numeric_limits<double>::infinity();

namespace detail {

void coproc_priority() = delete;  // poison pill: only ADL finds the customization point

template <class P>
constexpr bool priority_value_v =
    std::is_arithmetic_v<std::remove_cvref_t<P>> || std::is_enum_v<std::remove_cvref_t<P>>;

template <class P>
constexpr double to_priority(const P& p) noexcept {
    using V = std::remove_cvref_t<P>;
    if constexpr (std::is_enum_v<V>)
        return static_cast<double>(static_cast<std::underlying_type_t<V>>(p));
    else
        return static_cast<double>(p);
}

template <class T>
concept has_adl_priority = requires(const T& t) { requires priority_value_v<decltype(coproc_priority(t))>; };
template <class T>
concept has_priority_function = requires(const T& t) { requires priority_value_v<decltype(t.priority())>; };
template <class T>
concept has_priority_member = requires(const T& t) { requires priority_value_v<decltype(t.priority)>; };

template <class T>
struct is_variant : std::false_type {};
template <class... Ts>
struct is_variant<std::variant<Ts...>> : std::true_type {};
// Whether message_priority(T) can be anything but no_priority.
template <class T>
inline constexpr bool has_message_priority =
    has_adl_priority<T> || has_priority_function<T> || has_priority_member<T> || is_variant<T>::value;

}  // namespace detail

/// The priority of `message` as a PriorityMessenger sees it.
template <class T>
[[nodiscard]] double message_priority(const T& message) {
    using detail::coproc_priority;
    if constexpr (detail::has_adl_priority<T>) {
        return detail::to_priority(coproc_priority(message));
    } else if constexpr (detail::has_priority_function<T>) {
        return detail::to_priority(message.priority());
    } else if constexpr (detail::has_priority_member<T>) {
        return detail::to_priority(message.priority);
    } else if constexpr (detail::is_variant<T>::value) {
        return std::visit([](const auto& alternative) { return message_priority(alternative); }, message);
    } else {
        return no_priority;
    }
}

}  // namespace coproc
