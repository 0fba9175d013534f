// libFuzzer target: the bus's JSON parser on arbitrary bytes (a subscriber
// parses whatever arrives on the wire). It must never crash; it must agree
// with nlohmann::json::parse on what is valid and on the value; and what it
// accepts must survive the writer (Python's json.dumps format) unchanged.
#include "json_text.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    coproc::Json ours;
    const bool accepted = coproc::detail::parse_json(text, ours);

    // nlohmann ends the input at a NUL byte, and nests without limit: compare
    // only where both rules agree.
    const auto brackets = std::count_if(text.begin(), text.end(), [](char c) { return c == '[' || c == '{'; });
    if (text.find('\0') == std::string_view::npos && brackets <= coproc::detail::max_json_depth) {
        const coproc::Json reference =
            coproc::Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
        if (accepted != !reference.is_discarded()) std::abort();
        if (accepted && ours != reference) std::abort();
    }
    if (!accepted) return 0;

    std::string once;
    try {
        coproc::detail::append_python_json(once, ours);
    } catch (...) {
        std::abort();  // a parsed value is never binary
    }
    coproc::Json back;
    if (!coproc::detail::parse_json(once, back) || back != ours) std::abort();
    std::string twice;
    coproc::detail::append_python_json(twice, back);
    if (once != twice) std::abort();
    return 0;
}
