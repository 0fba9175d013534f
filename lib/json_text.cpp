// The bus's JSON text: Python's json.dumps format, byte for byte, for what
// we send, and a strict single-pass parser for what we receive (nlohmann's
// own parser builds its DOM through a SAX stack and costs several times more
// per small message).
#include "json_text.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

namespace coproc::detail {

// ---------------------------------------------------------------- writer

namespace {

void append_python_float(std::string& out, double d) {
    if (std::isnan(d)) {
        out += "NaN";
        return;
    }
    if (std::isinf(d)) {
        out += d > 0 ? "Infinity" : "-Infinity";
        return;
    }
    // Shortest round-trip digits, then CPython's float_repr layout: exponent
    // form when the decimal point is at <= -4 or > 16, else positional.
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));
    bool negative = false;
    if (sci.front() == '-') {
        negative = true;
        sci.remove_prefix(1);
    }
    const auto e = sci.find('e');
    std::string digits;
    for (char c : sci.substr(0, e))
        if (c != '.') digits += c;
    const int exp10 = std::stoi(std::string(sci.substr(e + 1)));
    const int decpt = exp10 + 1;
    if (negative) out += '-';
    if (decpt <= -4 || decpt > 16) {
        out += digits[0];
        if (digits.size() > 1) {
            out += '.';
            out.append(digits, 1);
        }
        out += fmt::format("e{}{:02d}", exp10 < 0 ? '-' : '+', std::abs(exp10));
    } else if (decpt <= 0) {
        out += "0.";
        out.append(static_cast<std::size_t>(-decpt), '0');
        out += digits;
    } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
        out += digits;
        out.append(static_cast<std::size_t>(decpt) - digits.size(), '0');
        out += ".0";
    } else {
        out.append(digits, 0, static_cast<std::size_t>(decpt));
        out += '.';
        out.append(digits, static_cast<std::size_t>(decpt));
    }
}

template <class Int>
void append_integer(std::string& out, Int v) {
    char buf[24];  // 20 digits and a sign
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, res.ptr);
}

void append_u_escape(std::string& out, unsigned v) { out += fmt::format("\\u{:04x}", v); }

// ensure_ascii=True: everything outside ' '..'~' is escaped, astral code
// points as surrogate pairs. The input is valid UTF-8 (nlohmann checks it).
void append_python_string(std::string& out, std::string_view s) {
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        // Printable ASCII other than '"' and '\\' is copied as it is, in runs
        // (one append per run, not one per character).
        std::size_t run = i;
        while (run < s.size()) {
            const auto r = static_cast<unsigned char>(s[run]);
            if (r < 0x20 || r >= 0x7f || r == '"' || r == '\\') break;
            ++run;
        }
        if (run != i) {
            out.append(s.data() + i, run - i);
            i = run;
            continue;
        }
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                default:
                    if (c < 0x20 || c == 0x7f)
                        append_u_escape(out, c);
                    else
                        out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        const std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        unsigned cp = c & (len == 2 ? 0x1Fu : len == 3 ? 0x0Fu : 0x07u);
        for (std::size_t k = 1; k < len && i + k < s.size(); ++k)
            cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            append_u_escape(out, 0xD800 + (cp >> 10));
            append_u_escape(out, 0xDC00 + (cp & 0x3FF));
        } else {
            append_u_escape(out, cp);
        }
        i += len;
    }
    out += '"';
}

}  // namespace

void append_python_json(std::string& out, const Json& v) {
    switch (v.type()) {
        case Json::value_t::null: out += "null"; break;
        case Json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
        // get_ptr reads the stored number; get<T>() would convert through a switch.
        case Json::value_t::number_integer: append_integer(out, *v.get_ptr<const Json::number_integer_t*>()); break;
        case Json::value_t::number_unsigned: append_integer(out, *v.get_ptr<const Json::number_unsigned_t*>()); break;
        case Json::value_t::number_float: append_python_float(out, v.get<double>()); break;
        case Json::value_t::string: append_python_string(out, v.get_ref<const std::string&>()); break;
        case Json::value_t::array: {
            out += '[';
            bool first = true;
            for (const auto& item : v.get_ref<const Json::array_t&>()) {
                if (!first) out += ", ";
                first = false;
                append_python_json(out, item);
            }
            out += ']';
            break;
        }
        case Json::value_t::object: {
            out += '{';
            bool first = true;
            // The map itself, not items(): its iteration proxy costs more than the writing.
            for (const auto& [key, item] : v.get_ref<const Json::object_t&>()) {
                if (!first) out += ", ";
                first = false;
                append_python_string(out, key);
                out += ": ";
                append_python_json(out, item);
            }
            out += '}';
            break;
        }
        case Json::value_t::binary:
        case Json::value_t::discarded: throw std::invalid_argument("coproc::Bus: binary JSON values cannot be sent");
    }
}

bool valid_utf8(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        unsigned cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        // overlong forms, surrogates and values beyond Unicode are invalid
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

// ---------------------------------------------------------------- parser

namespace {

class Parser {
public:
    explicit Parser(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

    bool document(Json& out) {
        if (end_ - p_ >= 3 && std::memcmp(p_, "\xEF\xBB\xBF", 3) == 0) p_ += 3;
        skip_ws();
        if (!value(out, 0)) return false;
        skip_ws();
        return p_ == end_;
    }

private:
    void skip_ws() noexcept {
        while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
    }
    bool literal(std::string_view word) noexcept {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0)
            return false;
        p_ += word.size();
        return true;
    }

    bool value(Json& out, int depth) {
        if (p_ == end_) return false;
        switch (*p_) {
            case '{': return object(out, depth + 1);
            case '[': return array(out, depth + 1);
            case '"': {
                out = Json::string_t();
                return string(out.get_ref<Json::string_t&>());
            }
            case 't': out = true; return literal("true");
            case 'f': out = false; return literal("false");
            case 'n': out = nullptr; return literal("null");
            // Python's json.dumps writes non-finite floats so, and its
            // json.loads reads them: so do we (the writer above writes them).
            case 'N': out = std::numeric_limits<double>::quiet_NaN(); return literal("NaN");
            case 'I': out = std::numeric_limits<double>::infinity(); return literal("Infinity");
            default: return number(out);
        }
    }

    bool object(Json& out, int depth) {
        if (depth > max_json_depth) return false;
        out = Json::object();
        auto& members = out.get_ref<Json::object_t&>();
        std::string key;
        return elements('}', [&] {
            if (p_ == end_ || *p_ != '"') return false;
            // Room for a few members at once: growing 1, 2, 4 costs a
            // 4-member object three allocations and the moves between them;
            // the slack is at most three members of a message that lives
            // briefly.
            if (members.empty()) members.reserve(4);
            key.clear();
            if (!string(key)) return false;
            skip_ws();
            if (p_ == end_ || *p_ != ':') return false;
            ++p_;
            skip_ws();
            // Duplicate keys: the last value wins, in the first one's place.
            Json& slot = members.emplace(key, nullptr).first->second;  // ordered_map copies the key
            return value(slot, depth);
        });
    }

    bool array(Json& out, int depth) {
        if (depth > max_json_depth) return false;
        out = Json::array();
        auto& items = out.get_ref<Json::array_t&>();
        return elements(']', [&] {
            if (items.empty()) items.reserve(4);  // as for objects
            items.emplace_back();
            return value(items.back(), depth);
        });
    }

    // At an opening bracket: `element()` for each comma-separated element
    // (whitespace around them skipped) up to the closing `close`.
    template <class F>
    bool elements(char close, F&& element) {
        ++p_;  // '{' or '['
        skip_ws();
        if (p_ != end_ && *p_ == close) {
            ++p_;
            return true;
        }
        for (;;) {
            if (!element()) return false;
            skip_ws();
            if (p_ == end_) return false;
            if (*p_ == close) {
                ++p_;
                return true;
            }
            if (*p_ != ',') return false;
            ++p_;
            skip_ws();
        }
    }

    bool hex4(unsigned& v) noexcept {
        if (end_ - p_ < 4) return false;
        v = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = *p_++;
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= static_cast<unsigned>(c - 'A' + 10);
            else
                return false;
        }
        return true;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // At the opening quote. Raw bytes are copied in runs; control characters
    // must be escaped; non-ASCII runs must be valid UTF-8.
    bool string(std::string& out) {
        ++p_;  // '"'
        for (;;) {
            const char* run = p_;
            bool ascii = true;
            while (p_ != end_ && *p_ != '"' && *p_ != '\\') {
                const auto c = static_cast<unsigned char>(*p_);
                if (c < 0x20) return false;
                if (c >= 0x80) ascii = false;
                ++p_;
            }
            if (p_ == end_) return false;
            const std::string_view bytes(run, static_cast<std::size_t>(p_ - run));
            if (!ascii && !valid_utf8(bytes)) return false;
            out.append(bytes);
            if (*p_ == '"') {
                ++p_;
                return true;
            }
            ++p_;  // '\\'
            if (p_ == end_) return false;
            switch (*p_++) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = 0;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a lone low surrogate
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        unsigned low = 0;
                        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
                        p_ += 2;
                        if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: return false;
            }
        }
    }

    bool number(Json& out) {
        const char* start = p_;
        bool negative = false;
        if (p_ != end_ && *p_ == '-') {
            negative = true;
            ++p_;
        }
        if (p_ == end_) return false;
        if (negative && *p_ == 'I') {
            out = -std::numeric_limits<double>::infinity();
            return literal("Infinity");
        }
        if (*p_ == '0') {
            ++p_;
        } else if (*p_ >= '1' && *p_ <= '9') {
            while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        } else {
            return false;
        }
        bool integral = true;
        if (p_ != end_ && *p_ == '.') {
            integral = false;
            ++p_;
            if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
            while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        }
        if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
            integral = false;
            ++p_;
            if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
            while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        }
        if (integral) {
            if (negative) {
                std::int64_t v = 0;
                if (std::from_chars(start, p_, v).ec == std::errc()) {
                    out = Json::number_integer_t(v);
                    return true;
                }
            } else {
                std::uint64_t v = 0;
                if (std::from_chars(start, p_, v).ec == std::errc()) {
                    out = Json::number_unsigned_t(v);
                    return true;
                }
            }
            // Out of range for 64 bits: a float, as nlohmann does.
        }
        double d = 0;
        const auto result = std::from_chars(start, p_, d);
        if (result.ec == std::errc::result_out_of_range) {
            // Underflow: strtod's nearest value (0 or a subnormal), as nlohmann;
            // overflow to infinity is refused below, as nlohmann does.
            d = std::strtod(std::string(start, p_).c_str(), nullptr);
        } else if (result.ec != std::errc() || result.ptr != p_) {
            return false;
        }
        if (!std::isfinite(d)) return false;
        out = Json::number_float_t(d);
        return true;
    }

    const char* p_;
    const char* end_;
};

}  // namespace

bool parse_json(std::string_view text, Json& out) {
    Parser parser(text);
    return parser.document(out);
}

}  // namespace coproc::detail
