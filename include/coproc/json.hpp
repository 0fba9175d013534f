// coproc/json.hpp — Json, the value a bus message carries, and the two
// helpers the bus's templates call. Compiled in lib/json.cpp (libcoproc-bus).
//
//   coproc::Json reading = {{"sensor", "t1"}, {"celsius", 21.5}};
//   publisher.put("readings", reading);
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <string>

#include <nlohmann/json.hpp>

namespace coproc {

/// Bus messages: JSON values that keep their keys' insertion order (like
/// Python's dicts). Any type with nlohmann to_json/from_json converts.
using Json = nlohmann::ordered_json;

namespace detail {
/// Python json.dumps(value) with default settings, byte for byte.
[[nodiscard]] std::string python_json_dumps(const Json& value);
/// Empties `value`'s containers leaves first (recursing at most a few dozen
/// levels; deeper ones are left to nlohmann's iterative destructor). Never
/// throws; `value` stays valid, with the same type and no children.
void release_json(Json& value) noexcept;
}  // namespace detail

}  // namespace coproc
