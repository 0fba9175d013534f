// Codec: cereal round trips into reused buffers, and bounded decoding.
#include <catch2/catch.hpp>

#include <coproc/codec.hpp>

#include <array>
#include <cereal/types/array.hpp>
#include <cstring>
#include <map>
#include <string>
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
    bool operator==(const Point&) const = default;
};
using Nested = std::map<std::string, std::vector<std::variant<int, std::string, Point>>>;

std::string encoded_size_prefix(std::uint64_t n) {
    std::string s(sizeof n, '\0');
    std::memcpy(s.data(), &n, sizeof n);
    return s;
}
}  // namespace

TEST_CASE("values round-trip, nested containers included", "[codec]") {
    Nested value{{"a", {1, std::string("two"), Point{3, 4.5, "p"}}}, {"empty", {}}};
    std::string buf;
    coproc::encode_append(buf, value);
    CHECK(coproc::decode<Nested>(buf) == value);
    // Appending reuses the buffer: two values back to back decode separately.
    const std::size_t first = buf.size();
    coproc::encode_append(buf, std::string("tail"));
    CHECK(coproc::decode<std::string>(std::string_view(buf).substr(first)) == "tail");
}

TEST_CASE("a 2^60 element count is a ProtocolError, not bad_alloc", "[codec]") {
    const std::string bytes = encoded_size_prefix(std::uint64_t{1} << 60) + "abcd";
    CHECK_THROWS_AS(coproc::decode<std::vector<std::uint64_t>>(bytes), coproc::ProtocolError);
    CHECK_THROWS_AS(coproc::decode<std::string>(bytes), coproc::ProtocolError);
    CHECK_THROWS_AS(coproc::decode<std::vector<std::string>>(bytes), coproc::ProtocolError);
    CHECK_THROWS_AS((coproc::decode<std::map<int, int>>(bytes)), coproc::ProtocolError);
}

TEST_CASE("element counts cannot multiply into allocations beyond the payload", "[codec]") {
    // 1,000 promised elements of 8,000 bytes each, in a payload of ~1 KiB:
    // cereal's own loader would allocate 8 MB before failing.
    using Big = std::array<double, 1000>;
    const std::string bytes = encoded_size_prefix(1000) + std::string(1000, 'a');
    CHECK_THROWS_AS(coproc::decode<std::vector<Big>>(bytes), coproc::ProtocolError);
    // Arithmetic vectors: 1,000 uint64 need 8,000 bytes.
    CHECK_THROWS_AS(coproc::decode<std::vector<std::uint64_t>>(bytes), coproc::ProtocolError);
    // Well-formed vectors of every kind still round-trip.
    std::string buf;
    const std::vector<Big> big(3, Big{});
    const std::vector<bool> flags{true, false, true};
    const std::vector<std::uint16_t> nums{1, 2, 65535};
    coproc::encode_append(buf, big);
    CHECK(coproc::decode<std::vector<Big>>(buf) == big);
    buf.clear();
    coproc::encode_append(buf, flags);
    CHECK(coproc::decode<std::vector<bool>>(buf) == flags);
    buf.clear();
    coproc::encode_append(buf, nums);
    CHECK(coproc::decode<std::vector<std::uint16_t>>(buf) == nums);
}

TEST_CASE("truncated, trailing and invalid input are ProtocolErrors", "[codec]") {
    std::string buf;
    coproc::encode_append(buf, Point{1, 2, "three"});
    CHECK_THROWS_AS(coproc::decode<Point>(std::string_view(buf).substr(0, buf.size() - 1)), coproc::ProtocolError);
    CHECK_THROWS_AS(coproc::decode<Point>(buf + "x"), coproc::ProtocolError);
    CHECK_THROWS_AS(coproc::decode<int>(""), coproc::ProtocolError);
    // variant index out of range
    std::string bad_index;
    coproc::encode_append(bad_index, std::int32_t{7});
    CHECK_THROWS_AS((coproc::decode<std::variant<int, std::string>>(bad_index)), coproc::ProtocolError);
}
