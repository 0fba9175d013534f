// The remote workers' frames (see remote_wire.hpp).
#include "remote_wire.hpp"

#include <bit>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "coproc/detail/endian.hpp"

namespace coproc::detail::remote {

namespace {

// Appends `v` little-endian.
template <class U>
void put(std::string& out, U v) {
    char bytes[sizeof(U)];
    put_le(bytes, v);
    out.append(bytes, sizeof bytes);
}
void put_string(std::string& out, std::string_view s) {
    put(out, static_cast<std::uint32_t>(s.size()));
    out.append(s);
}

// Reads little-endian fields off the front of `in`; false once short.
struct Reader {
    std::string_view in;
    template <class U>
    bool get(U& v) noexcept {
        if (in.size() < sizeof(U)) return false;
        v = get_le<U>(in.data());
        in.remove_prefix(sizeof(U));
        return true;
    }
    // A u32 length, then that many bytes (at most `max`).
    bool view(std::string_view& s, std::size_t max) noexcept {
        std::uint32_t n = 0;
        if (!get(n) || n > max || n > in.size()) return false;
        s = in.substr(0, n);
        in.remove_prefix(n);
        return true;
    }
    bool string(std::string& s) {
        std::string_view v;
        if (!view(v, max_hello_string)) return false;
        s.assign(v);
        return true;
    }
};

}  // namespace

std::optional<Frame> parse_frame(std::string_view bytes) noexcept {
    if (bytes.empty()) return std::nullopt;
    const auto k = static_cast<std::uint8_t>(bytes[0]);
    if (k < static_cast<std::uint8_t>(Kind::hello) || k > static_cast<std::uint8_t>(Kind::batch)) return std::nullopt;
    return Frame{static_cast<Kind>(k), bytes.substr(1)};
}

std::string make_frame(Kind kind, std::string_view body) {
    std::string out;
    out.reserve(1 + body.size());
    out.push_back(static_cast<char>(kind));
    out.append(body);
    return out;
}

std::vector<std::string> pool_frames(std::string_view packed, std::size_t limit) {
    std::vector<std::string> frames;
    std::string_view run;  // the messages waiting to go, as packed
    std::size_t in_run = 0;
    const auto flush = [&] {
        if (in_run == 1) {
            frames.push_back(make_frame(Kind::pool, run.substr(4)));
        } else if (in_run > 1) {
            frames.push_back(make_frame(Kind::batch, run));
        }
        run = {};
        in_run = 0;
    };
    Reader r{packed};
    while (!r.in.empty()) {
        const char* at = r.in.data();
        std::string_view message;
        if (!r.view(message, r.in.size())) throw std::invalid_argument("coproc: pool_frames: malformed pack");
        const std::size_t more = 4 + message.size();
        if (1 + run.size() + more > limit) flush();
        run = std::string_view(run.empty() ? at : run.data(), run.size() + more);
        ++in_run;
    }
    flush();
    return frames;
}

bool split_batch(std::string_view body, std::vector<std::string_view>& out) {
    const std::size_t before = out.size();
    Reader r{body};
    while (!r.in.empty()) {
        std::string_view part;
        if (!r.view(part, r.in.size())) {
            out.resize(before);
            return false;
        }
        out.push_back(part);
    }
    return true;
}

std::string encode_hello(const Hello& hello) {
    std::string out;
    put(out, hello.version);
    put_string(out, hello.wire_abi);
    put_string(out, hello.task_type);
    put_string(out, hello.result_type);
    put(out, hello.fingerprint);
    put_string(out, hello.label);
    return out;
}

std::optional<Hello> decode_hello(std::string_view body) noexcept {
    try {
        Reader r{body};
        Hello h;
        if (!r.get(h.version)) return std::nullopt;
        if (h.version != protocol_version) {
            // Another layout may follow: only the version is known.
            return h;
        }
        if (!r.string(h.wire_abi) || !r.string(h.task_type) || !r.string(h.result_type) || !r.get(h.fingerprint) ||
            !r.string(h.label) || !r.in.empty())
            return std::nullopt;
        return h;
    } catch (...) {
        return std::nullopt;  // std::bad_alloc: as malformed
    }
}

std::string hello_mismatch(const Hello& got, const Hello& want) {
    if (got.version != want.version)
        return fmt::format("protocol version {} (this pool speaks {})", got.version, want.version);
    if (got.wire_abi != want.wire_abi)
        return fmt::format(
            "its machine's data layout '{}' differs from the pool's '{}' (cereal's binary archive "
            "needs the same byte order and sizes on every host)",
            got.wire_abi, want.wire_abi);
    if (got.task_type != want.task_type || got.result_type != want.result_type)
        return fmt::format("its task and result types ({}, {}) are not the pool's ({}, {})", got.task_type,
                           got.result_type, want.task_type, want.result_type);
    if (got.fingerprint != want.fingerprint)
        return "its message fingerprint differs from the pool's (built with another compiler or coproc?)";
    return {};
}

std::string this_wire_abi() {
    return fmt::format("{}-endian/long{}/ldouble{}/wchar{}/coproc-remote{}",
                       std::endian::native == std::endian::little ? "little" : "big", sizeof(long), sizeof(long double),
                       sizeof(wchar_t), protocol_version);
}

std::string encode_welcome(const Welcome& welcome) {
    std::string out;
    put(out, static_cast<std::uint64_t>(welcome.heartbeat_interval.count()));
    put(out, static_cast<std::uint64_t>(welcome.heartbeat_timeout.count()));
    put(out, welcome.max_message_size);
    return out;
}

std::optional<Welcome> decode_welcome(std::string_view body) noexcept {
    Reader r{body};
    std::uint64_t interval = 0;
    std::uint64_t timeout = 0;
    std::uint64_t max_message_size = 0;
    if (!r.get(interval) || !r.get(timeout) || !r.get(max_message_size) || !r.in.empty()) return std::nullopt;
    // Sane bounds: a day at most, and a timeout above the interval.
    constexpr std::uint64_t day = 86'400'000;
    if (interval == 0 || interval > day || timeout <= interval || timeout > day) return std::nullopt;
    return Welcome{std::chrono::milliseconds(static_cast<long>(interval)),
                   std::chrono::milliseconds(static_cast<long>(timeout)), max_message_size};
}

}  // namespace coproc::detail::remote
