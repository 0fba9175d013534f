// The wire format: header encode/decode with every length checked before
// allocating, and the buffered reader that parses many frames per read().
#include "coproc/detail/frame.hpp"
#include <fmt/format.h>
#include <memory>
#include <cstdlib>
#include <cxxabi.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "coproc/detail/endian.hpp"
#include "coproc/error.hpp"
#include "socket.hpp"

namespace coproc::detail {
namespace {

void append_le32(std::string& out, std::uint32_t v) {
    char b[4];
    put_le(b, v);
    out.append(b, 4);
}

// Reads a length-prefixed string from an error payload, advancing `pos`.
std::string_view take_string(std::string_view payload, std::size_t& pos) {
    if (payload.size() - pos < 4) throw ProtocolError("coproc: truncated error frame");
    const std::uint32_t len = get_le<std::uint32_t>(payload.data() + pos);
    pos += 4;
    if (payload.size() - pos < len) throw ProtocolError("coproc: truncated error frame");
    const auto s = payload.substr(pos, len);
    pos += len;
    return s;
}

}  // namespace

namespace {
// The 32-byte header; the body length (bytes 24..31) is written by the caller.
void write_header(char* h, FrameKind kind, const Channel& channel, double priority) {
    h[0] = static_cast<char>(frame_magic);
    h[1] = static_cast<char>(kind);
    h[2] = static_cast<char>(channel.is_none() ? 0 : channel.is_integer() ? 1 : 2);
    h[3] = 0;
    const std::uint32_t name_len = channel.is_string() ? static_cast<std::uint32_t>(channel.string().size()) : 0;
    if (channel.is_string() && channel.string().size() > std::numeric_limits<std::uint32_t>::max())
        throw ProtocolError("coproc: channel name too long");
    put_le(h + 4, name_len);
    put_le(h + 8, static_cast<std::uint64_t>(channel.is_integer() ? channel.integer() : 0));
    // NaN has no place in an order: it is sent as "no priority" (back of the queue).
    if (std::isnan(priority)) priority = std::numeric_limits<double>::infinity();
    put_le(h + 16, std::bit_cast<std::uint64_t>(priority));
    put_le(h + 24, std::uint64_t{0});
}
}  // namespace

std::size_t begin_frame(std::string& out, FrameKind kind, const Channel& channel, double priority) {
    const std::size_t start = out.size();
    out.resize(start + frame_header_size);
    write_header(out.data() + start, kind, channel, priority);
    if (channel.is_string()) out.append(channel.string());
    return start;
}

HelloFrame hello_frame(std::uint64_t fingerprint, std::string_view type_name) noexcept {
    HelloFrame f;
    char* out = f.bytes_.data();
    type_name = type_name.substr(0, hello_max_name);
    write_header(out, FrameKind::hello, Channel{}, 0.0);  // no channel name: cannot throw
    put_le(out + 24, std::uint64_t{hello_payload_size + type_name.size()});
    put_le(out + frame_header_size, protocol_version);
    put_le(out + frame_header_size + 4, fingerprint);
    if (!type_name.empty())  // an empty view may have a null data()
        std::memcpy(out + frame_header_size + hello_payload_size, type_name.data(), type_name.size());
    f.size_ = frame_header_size + hello_payload_size + type_name.size();
    return f;
}

namespace {
std::string demangled(std::string_view mangled) {
    const std::string name(mangled);
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status), std::free);
    return status == 0 && out ? std::string(out.get()) : name;
}
}  // namespace

void mark_slot_frame(std::string& out, std::size_t start) noexcept {
    out[start + 3] = static_cast<char>(frame_flag_slot);
}

void finish_frame(std::string& out, std::size_t start, std::size_t max_frame_size, std::size_t gathered) {
    const std::size_t body = out.size() - start - frame_header_size + gathered;
    if (body > max_frame_size) {
        out.resize(start);
        throw ProtocolError("coproc: message of " + std::to_string(body) + " bytes exceeds the maximum frame size of " +
                            std::to_string(max_frame_size));
    }
    const std::uint32_t name_len = get_le<std::uint32_t>(out.data() + start + 4);
    put_le(out.data() + start + 24, static_cast<std::uint64_t>(body - name_len));
}

void append_frame(std::string& out, FrameKind kind, const Channel& channel, double priority, std::string_view payload,
                  std::size_t max_frame_size) {
    const std::size_t start = begin_frame(out, kind, channel, priority);
    out.append(payload);
    finish_frame(out, start, max_frame_size);
}

void check_hello(std::string_view payload, std::uint64_t fingerprint, std::string_view type_name) {
    if (payload.size() < 4) throw ProtocolError("coproc: malformed hello frame");
    const auto version = get_le<std::uint32_t>(payload.data());
    if (version != protocol_version)
        throw ProtocolError("coproc: peer speaks protocol version " + std::to_string(version) + ", this side " +
                            std::to_string(protocol_version) + " (build both sides with the same coproc)");
    if (payload.size() < hello_payload_size || payload.size() > hello_payload_size + hello_max_name)
        throw ProtocolError("coproc: malformed hello frame");
    if (get_le<std::uint64_t>(payload.data() + 4) == fingerprint) return;
    const std::string_view peer_name = payload.substr(hello_payload_size);
    if (peer_name.empty() || type_name.empty())
        throw ProtocolError("coproc: the peer's message type differs from this side's (fingerprint mismatch)");
    throw ProtocolError(
        fmt::format("coproc: the peer's message type differs from this side's: this side has {}, "
                    "the peer {} (both sides need the same Msg, built by the same compiler)",
                    demangled(type_name), demangled(peer_name)));
}

std::string encode_error(std::string_view type_name, std::string_view message) {
    std::string s;
    s.reserve(8 + type_name.size() + message.size());
    append_le32(s, static_cast<std::uint32_t>(std::min<std::size_t>(type_name.size(), UINT32_MAX)));
    s.append(type_name.substr(0, UINT32_MAX));
    append_le32(s, static_cast<std::uint32_t>(std::min<std::size_t>(message.size(), UINT32_MAX)));
    s.append(message.substr(0, UINT32_MAX));
    return s;
}

void throw_error_payload(std::string_view payload) {
    std::size_t pos = 0;
    const auto type_name = take_string(payload, pos);
    const auto message = take_string(payload, pos);
    if (pos != payload.size()) throw ProtocolError("coproc: trailing bytes in error frame");
    throw_remote(std::string(type_name), std::string(message));
}

namespace {
Channel make_channel(unsigned char kind, std::uint64_t integer, std::string_view name) {
    if (kind == 1) return Channel(static_cast<std::int64_t>(integer));
    if (kind == 2) return Channel(name);
    return Channel{};
}
}  // namespace

std::optional<FrameView> FrameReader::next() {
    if (direct_) {
        if (large_filled_ < large_.size()) return std::nullopt;
        direct_ = false;
        const std::string_view body = large_.view();
        return std::optional<FrameView>(
            std::in_place, large_kind_, large_priority_,
            make_channel(large_chan_kind_, large_chan_int_, body.substr(0, large_name_len_)),
            body.substr(large_name_len_), false, &large_);
    }
    const std::size_t avail = end_ - begin_;
    if (avail < frame_header_size) return std::nullopt;
    const char* h = buf_.get() + begin_;
    if (static_cast<unsigned char>(h[0]) != frame_magic) throw ProtocolError("coproc: bad frame magic");
    const auto kind = static_cast<unsigned char>(h[1]);
    if (kind < 1 || kind > 6) throw ProtocolError("coproc: unknown frame kind " + std::to_string(kind));
    const auto chan_kind = static_cast<unsigned char>(h[2]);
    const auto flags = static_cast<unsigned char>(h[3]);
    if (chan_kind > 2 || (flags & ~frame_flag_slot) != 0) throw ProtocolError("coproc: bad frame header");
    const bool in_slot = flags == frame_flag_slot;
    if (in_slot && kind != static_cast<unsigned char>(FrameKind::data) &&
        kind != static_cast<unsigned char>(FrameKind::request) && kind != static_cast<unsigned char>(FrameKind::reply))
        throw ProtocolError("coproc: shared-memory flag on a control frame");
    const std::uint64_t name_len = get_le<std::uint32_t>(h + 4);
    const std::uint64_t chan_int = get_le<std::uint64_t>(h + 8);
    const double priority = std::bit_cast<double>(get_le<std::uint64_t>(h + 16));
    const std::uint64_t payload_len = get_le<std::uint64_t>(h + 24);
    if ((chan_kind != 2 && name_len != 0) || (chan_kind != 1 && chan_int != 0))
        throw ProtocolError("coproc: bad channel in frame header");
    if (std::isnan(priority)) throw ProtocolError("coproc: NaN priority in frame header");
    // Both checked separately first so the sum cannot overflow.
    if (payload_len > max_frame_ || name_len > max_frame_ || name_len + payload_len > max_frame_)
        throw ProtocolError("coproc: frame of " + std::to_string(name_len + payload_len) +
                            " bytes exceeds the maximum frame size of " + std::to_string(max_frame_));
    const auto body_len = static_cast<std::size_t>(name_len + payload_len);
    const std::size_t total = frame_header_size + body_len;
    if (avail < total) {
        if (body_len > direct_read_threshold && !in_slot) {
            // Read the rest straight into the frame's own buffer.
            if (spare_.reuse_for(body_len))
                large_ = std::move(spare_);
            else
                large_ = Bytes::uninitialized(body_len);
            large_filled_ = avail - frame_header_size;
            if (large_filled_ != 0) std::memcpy(large_.data(), h + frame_header_size, large_filled_);
            large_kind_ = static_cast<FrameKind>(kind);
            large_priority_ = priority;
            large_chan_kind_ = chan_kind;
            large_chan_int_ = chan_int;
            large_name_len_ = static_cast<std::size_t>(name_len);
            direct_ = true;
            begin_ = end_ = 0;  // everything buffered belonged to this frame
            need_ = frame_header_size;
            return std::nullopt;
        }
        need_ = total;
        return std::nullopt;
    }
    const char* body = h + frame_header_size;
    begin_ += total;
    need_ = frame_header_size;
    return std::optional<FrameView>(std::in_place, static_cast<FrameKind>(kind), priority,
                                    make_channel(chan_kind, chan_int, std::string_view(body, name_len)),
                                    std::string_view(body + name_len, static_cast<std::size_t>(payload_len)), in_slot);
}

void FrameReader::reserve_tail(std::size_t want) {
    if (cap_ - end_ >= want) return;
    if (begin_ > 0) {  // compact: move the partial frame to the front
        std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (cap_ - end_ >= want) return;
    const std::size_t cap = std::max(end_ + want, 2 * cap_);
    std::unique_ptr<char[]> bigger(new char[cap]);  // default-init: not zero-filled
    if (end_ != 0) std::memcpy(bigger.get(), buf_.get(), end_);
    buf_ = std::move(bigger);
    cap_ = cap;
}

long FrameReader::fill(int fd) { return fill_impl(fd, false); }
long FrameReader::fill_blocking(int fd) { return fill_impl(fd, true); }

long FrameReader::fill_impl(int fd, bool block) {
    char* dest = nullptr;
    std::size_t space = 0;
    const bool into_large = direct_ && large_filled_ < large_.size();
    if (into_large) {
        dest = large_.data() + large_filled_;
        space = large_.size() - large_filled_;
    } else {
        // (A complete large frame not yet taken by next(): what follows it
        // goes to the normal buffer, behind it in order.)
        if (begin_ == end_) begin_ = end_ = 0;
        // Reads ask for 64 KiB once a read has filled the buffer; until then
        // for 1 KiB. Right after fork every page written is a page fault,
        // in the worker and in its host: a worker that trades a few small
        // messages writes part of one heap page, not a 64 KiB span, and a
        // block this small comes from malloc's per-thread cache (at most
        // 1032 bytes), so the host's start and join of a worker leave
        // malloc's arena page untouched too.
        constexpr std::size_t chunk = std::size_t{64} * 1024;
        constexpr std::size_t first_chunk = 1024 - 16;  // malloc's chunk: 1 KiB with its header
        const std::size_t missing = need_ > end_ - begin_ ? need_ - (end_ - begin_) : 0;
        reserve_tail(std::max(missing, filled_once_ ? chunk : first_chunk));
        dest = buf_.get() + end_;
        space = cap_ - end_;
    }
    const long n = block ? recv_blocking(fd, dest, space) : recv_some(fd, dest, space);
    last_short_ = n >= 0 && static_cast<std::size_t>(n) < space;
    if (n >= 0 && !last_short_) filled_once_ = true;
    if (n > 0) {
        if (into_large)
            large_filled_ += static_cast<std::size_t>(n);
        else
            end_ += static_cast<std::size_t>(n);
    }
    return n;
}

void FrameReader::feed(std::string_view bytes) {
    if (direct_) {
        const std::size_t n = std::min(bytes.size(), large_.size() - large_filled_);
        if (n != 0) std::memcpy(large_.data() + large_filled_, bytes.data(), n);
        large_filled_ += n;
        bytes.remove_prefix(n);
    }
    if (bytes.empty()) return;
    if (begin_ == end_) begin_ = end_ = 0;
    reserve_tail(bytes.size());
    std::memcpy(buf_.get() + end_, bytes.data(), bytes.size());
    end_ += bytes.size();
}

}  // namespace coproc::detail
