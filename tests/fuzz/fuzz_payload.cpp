// libFuzzer target: payload decoding into several message types. Arbitrary
// bytes must decode or raise ProtocolError, with bounded allocation (ASan's
// allocator aborts on huge requests, so an unchecked size prefix is a crash
// here). Re-encoding what decoded must be stable.
#include <coproc/codec.hpp>

#include <cereal/types/array.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

namespace {

struct Point {
    int x = 0;
    double y = 0;
    std::string label;
    template <class A>
    void serialize(A& a) {
        a(x, y, label);
    }
};

template <class T>
void check(std::string_view bytes) {
    try {
        const T value = coproc::decode<T>(bytes);
        // Decoding may be lossy (a map with a repeated key keeps one), but what
        // we encode must decode to something that encodes the same way.
        std::string once;
        coproc::encode_append(once, value);
        std::string twice;
        coproc::encode_append(twice, coproc::decode<T>(once));
        if (once != twice) std::abort();
    } catch (const coproc::ProtocolError&) {
        // rejected: fine
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (data[0] % 8) {
        case 0: check<std::string>(bytes); break;
        case 1: check<std::vector<std::int64_t>>(bytes); break;
        case 2: check<std::map<std::string, std::vector<std::string>>>(bytes); break;
        case 3: check<std::variant<int, std::string, Point>>(bytes); break;
        case 4: check<std::vector<std::array<double, 64>>>(bytes); break;
        case 5: check<std::tuple<std::optional<Point>, std::vector<bool>, std::uint8_t>>(bytes); break;
        case 6: check<std::vector<std::vector<Point>>>(bytes); break;
        default: check<Point>(bytes); break;
    }
    return 0;
}
