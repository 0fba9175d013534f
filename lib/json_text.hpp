// lib/json_text.hpp — the bus's JSON text: Python's json.dumps format for
// sending, a strict parser for receiving. Compiled in lib/json_text.cpp.
// Private to libcoproc-bus (and its tests, fuzzers and benchmarks).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "coproc/json.hpp"

namespace coproc::detail {

/// Appends json.dumps(value) (Python defaults) to `out`. Throws
/// std::invalid_argument for binary values.
void append_python_json(std::string& out, const Json& value);

/// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code
/// points past U+10FFFF).
[[nodiscard]] bool valid_utf8(std::string_view s) noexcept;

/// Deepest nesting parse_json accepts (deeper input is rejected: the parser
/// recurses, and a hostile frame must not exhaust the stack).
inline constexpr int max_json_depth = 512;

/// Parses one JSON text (RFC 8259, as nlohmann::json::parse accepts it:
/// strings must be valid UTF-8, a leading UTF-8 BOM is skipped, NaN and
/// Infinity are not JSON; unlike nlohmann, a NUL byte does not end the
/// input early) into `out`. Integers become number_unsigned when
/// non-negative, number_integer when negative, number_float when they do not
/// fit or have a fraction or exponent; duplicate keys keep the last value at
/// the first key's place. Returns false on any error (then `out` is
/// unspecified). Never throws except std::bad_alloc.
[[nodiscard]] bool parse_json(std::string_view text, Json& out);

}  // namespace coproc::detail
