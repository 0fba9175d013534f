// The bus's JSON parser against nlohmann's: the same texts accepted, the same
// values (and number types) built — on a table of edge cases, on random
// documents, and on random corruptions of them.
#include <catch2/catch.hpp>

#include <coproc/bus.hpp>

#include "json_text.hpp"

#include <cstdint>
#include <random>
#include <limits>
#include <cmath>
#include <string>
#include <vector>

using coproc::Json;
using coproc::detail::parse_json;

namespace {

// Equal values with equal types all the way down (nlohmann's == calls 5
// and 5u equal; the wire must not change a number's type).
bool same(const Json& a, const Json& b) {
    if (a.type() != b.type()) return false;
    if (a.is_object()) {
        if (a.size() != b.size()) return false;
        auto ia = a.begin();
        auto ib = b.begin();
        for (; ia != a.end(); ++ia, ++ib)
            if (ia.key() != ib.key() || !same(ia.value(), ib.value())) return false;
        return true;
    }
    if (a.is_array()) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!same(a[i], b[i])) return false;
        return true;
    }
    return a == b;
}

// Checks that our parser agrees with nlohmann on `text`.
void agrees(const std::string& text) {
    INFO("text: " << text);
    Json got;
    if (text.find('\0') != std::string::npos) {
        // nlohmann takes a NUL byte for the end of input and ignores the
        // rest; a NUL is never valid JSON outside a string, nor raw inside one.
        REQUIRE_FALSE(parse_json(text, got));
        return;
    }
    const Json expected = Json::parse(text, nullptr, false);
    const bool ok = parse_json(text, got);
    REQUIRE(ok == !expected.is_discarded());
    if (ok) REQUIRE(same(got, expected));
}

Json random_value(std::mt19937_64& rng, int depth) {
    std::uniform_int_distribution<int> kind(0, depth > 3 ? 6 : 8);
    switch (kind(rng)) {
        case 0: return nullptr;
        case 1: return rng() % 2 == 0;
        case 2: return static_cast<std::int64_t>(rng()) >> (rng() % 64);
        case 3: return static_cast<std::uint64_t>(rng()) >> (rng() % 64);
        case 4:
            return std::ldexp(static_cast<double>(static_cast<std::int64_t>(rng())),
                              static_cast<int>(rng() % 200) - 100);
        case 5:
        case 6: {
            static const std::vector<std::string> pieces = {"a",    "key", " ", "\"", "\\",   "/",    "\n", "\t",
                                                            "\x01", "é",   "€", "𝄞",  "日本", "\x7f", ""};
            std::string s;
            const auto n = rng() % 6;
            for (std::size_t i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
            return s;
        }
        case 7: {
            Json a = Json::array();
            const auto n = rng() % 5;
            for (std::size_t i = 0; i < n; ++i) a.push_back(random_value(rng, depth + 1));
            return a;
        }
        default: {
            Json o = Json::object();
            const auto n = rng() % 5;
            for (std::size_t i = 0; i < n; ++i)
                o[std::string(1, static_cast<char>('a' + rng() % 4))] = random_value(rng, depth + 1);
            return o;
        }
    }
}

}  // namespace

TEST_CASE("the bus's JSON parser accepts and builds what nlohmann does: edge cases", "[bus][json]") {
    // clang-format off: a table, one edge case after the other
    const std::vector<std::string> texts = {
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1.5",
        "-1.5e3",
        "1E+2",
        "1e-2",
        "1e400",
        "-1e400",
        "1e-400",
        "0.1",
        "01",
        "1.",
        ".1",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "tru",
        "nul",
        "nulls",
        "\"\"",
        "\"abc\"",
        "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
        "\"\\u0041\\u00e9\\u20ac\"",
        "\"\\ud834\\udd1e\"",
        "\"\\ud834\"",
        "\"\\udd1e\"",
        "\"\\ud834\\u0041\"",
        "\"\\u12\"",
        "\"\\x41\"",
        "\"\\u0000\"",
        "\"a\x01b\"",
        std::string("1\0 2", 4),
        std::string("\"a\0b\"", 5),
        "\"\xc3\xa9\"",
        "\"\xc3\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xff\"",
        "\"abc",
        "[]",
        "[1,2,3]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[",
        "]",
        "{}",
        "{\"a\":1}",
        "{\"a\" : 1 , \"b\" : [true, null]}",
        "{\"a\":1,}",
        "{a:1}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,\"a\":2,\"b\":3}",
        " \t\n\r 1 \n",
        "",
        " ",
        "1 2",
        "\xEF\xBB\xBF{\"bom\": 1}",
        "\xEF\xBB\xBF",
        "{\"n\": 12345}",
        "[1.0, 2.50, -0.0, 1e0]",
        "{\"\xe6\x97\xa5\": \"\xe6\x9c\xac\"}",
        "[\"\\u00\"]",
        "// c\n1",
        "/* c */ 1",
    };
    // clang-format on
    for (const auto& t : texts) agrees(t);
}

TEST_CASE("the bus's JSON parser: random documents and random corruptions of them", "[bus][json]") {
    std::mt19937_64 rng(20261122);
    for (int i = 0; i < 3000; ++i) {
        const Json value = random_value(rng, 0);
        std::string text = value.dump();  // nlohmann's own format (UTF-8 kept)
        agrees(text);
        std::string python = coproc::detail::python_json_dumps(value);  // \uXXXX escapes, ", " and ": "
        agrees(python);
        Json back;
        REQUIRE(parse_json(python, back));
        REQUIRE(back == value);  // by value: a non-negative int64 comes back unsigned, as with nlohmann
        for (int m = 0; m < 8; ++m) {
            std::string bad = m % 2 == 0 ? text : python;
            if (bad.empty()) continue;
            switch (rng() % 4) {
                case 0: bad[rng() % bad.size()] = static_cast<char>(rng()); break;
                case 1: bad.resize(rng() % bad.size()); break;
                case 2: bad.insert(rng() % bad.size(), 1, "{}[],:\"\\ -0e.u\xc3\xff"[rng() % 17]); break;
                default: bad.erase(rng() % bad.size(), 1); break;
            }
            agrees(bad);
        }
    }
}

TEST_CASE("the bus's JSON parser reads NaN and Infinity as Python's json.loads does", "[bus][json]") {
    Json got;
    REQUIRE(parse_json("NaN", got));
    CHECK(std::isnan(got.get<double>()));
    REQUIRE(parse_json("Infinity", got));
    CHECK(got.get<double>() == std::numeric_limits<double>::infinity());
    REQUIRE(parse_json("-Infinity", got));
    CHECK(got.get<double>() == -std::numeric_limits<double>::infinity());
    REQUIRE(parse_json("{\"v\": NaN, \"w\": [Infinity, -Infinity, 1]}", got));
    CHECK(std::isnan(got["v"].get<double>()));
    CHECK(got["w"][0].get<double>() > 0);
    CHECK(std::isinf(got["w"][1].get<double>()));
    CHECK(got["w"][2] == 1);
    // What Python refuses, we refuse.
    for (const char* bad : {"-NaN", "nan", "inf", "Inf", "NaNx", "Infinit", "+Infinity", "[NaN,]", "- Infinity"}) {
        INFO(bad);
        CHECK_FALSE(parse_json(bad, got));
    }
    // And what we write, we read: the writer writes Python's spelling.
    std::string text;
    coproc::detail::append_python_json(text, Json{{"v", std::nan("")}});
    CHECK(text == "{\"v\": NaN}");
}

TEST_CASE("the bus's JSON parser refuses nesting deeper than its limit", "[bus][json]") {
    const auto nested = [](int depth) {
        return std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']');
    };
    Json out;
    CHECK(parse_json(nested(coproc::detail::max_json_depth), out));
    CHECK_FALSE(parse_json(nested(coproc::detail::max_json_depth + 1), out));
    CHECK_FALSE(parse_json(nested(100'000), out));  // no stack overflow
    CHECK_FALSE(parse_json(std::string(100'000, '{'), out));
}

TEST_CASE("a BusMessage frees its value leaves first, and copies and moves keep it whole", "[bus][json]") {
    Json value;
    REQUIRE(parse_json(R"({"id": 17, "tags": ["a", {"b": [1, 2]}], "user": {"name": "ana"}})", value));
    coproc::BusMessage original("jobs", value);
    coproc::BusMessage copy = original;
    CHECK(same(copy.message, value));
    coproc::BusMessage moved = std::move(copy);
    CHECK(same(moved.message, value));
    CHECK(moved.channel == "jobs");
    copy = moved;  // assigning over a moved-from message
    CHECK(same(copy.message, value));

    // release_json empties containers and keeps their types.
    Json released = value;
    coproc::detail::release_json(released);
    CHECK(released.is_object());
    CHECK(released.empty());

    // Nesting far past its recursion bound is left to nlohmann's iterative
    // destructor: no stack overflow.
    Json deep = Json::array();
    Json* at = &deep;
    for (int i = 0; i < 100'000; ++i) {
        at->push_back(Json::array());
        at = &at->back();
    }
    { const coproc::BusMessage m("deep", std::move(deep)); }
    SUCCEED("destroyed");
}
