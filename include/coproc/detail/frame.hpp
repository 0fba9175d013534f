// coproc/detail/frame.hpp — the wire format. Internal.
//
// A frame is a fixed 32-byte header, then the channel name (string channels
// only), then the payload. All header fields are little-endian:
//
//   offset size field
//        0    1 magic 0xC5
//        1    1 kind (FrameKind)
//        2    1 channel kind: 0 none, 1 integer, 2 string
//        3    1 reserved, must be 0
//        4    4 channel name length (string channels; 0 otherwise)
//        8    8 channel integer (integer channels; 0 otherwise)
//       16    8 priority, IEEE-754 binary64 (+inf = none; never NaN)
//       24    8 payload length
//
// Every length is checked against the reader's maximum frame size before any
// allocation. A frame is written with one send() (header and body together);
// the reader parses every complete frame out of one read().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "coproc/channel.hpp"

namespace coproc::detail {

enum class FrameKind : std::uint8_t { hello = 1, data = 2, request = 3, reply = 4, error = 5, close = 6 };

inline constexpr std::size_t frame_header_size = 32;
inline constexpr std::uint8_t frame_magic = 0xC5;
inline constexpr std::uint32_t protocol_version = 1;
/// Default largest frame (header excluded) a reader accepts: 256 MiB.
inline constexpr std::size_t default_max_frame_size = std::size_t{256} << 20;

/// A decoded frame; its views point into the reader's buffer and stay valid
/// until the reader's next fill().
struct FrameView {
    FrameKind kind;
    double priority;
    Channel channel;
    std::string_view payload;
};

/// Appends the header and channel name of a frame whose payload the caller
/// appends next; returns the frame's start offset for finish_frame.
std::size_t begin_frame(std::string& out, FrameKind kind, const Channel& channel, double priority);
/// Writes the payload length of the frame begun at `start`. Throws
/// ProtocolError when the frame body exceeds `max_frame_size`.
void finish_frame(std::string& out, std::size_t start, std::size_t max_frame_size);
/// Appends a whole frame with the given payload.
void append_frame(std::string& out, FrameKind kind, const Channel& channel, double priority, std::string_view payload,
                  std::size_t max_frame_size);

/// Hello payload: protocol version and message-type fingerprint.
[[nodiscard]] std::string encode_hello(std::uint64_t fingerprint);
/// Throws ProtocolError on a version or fingerprint mismatch, or bad bytes.
void check_hello(std::string_view payload, std::uint64_t fingerprint);
/// Error payload: the exception's type name and message.
[[nodiscard]] std::string encode_error(std::string_view type_name, std::string_view message);
/// Throws the decoded exception (registered type or RemoteError); ProtocolError on bad bytes.
[[noreturn]] void throw_error_payload(std::string_view payload);

/// Buffered frame reader for one stream. Not thread-safe.
class FrameReader {
public:
    explicit FrameReader(std::size_t max_frame_size = default_max_frame_size) : max_frame_(max_frame_size) {}

    /// Parses the next complete buffered frame; nullopt when none is complete.
    /// Throws ProtocolError on a malformed header or an oversized length
    /// (checked before allocating). Consumes the frame it returns.
    [[nodiscard]] std::optional<FrameView> next();

    /// One non-blocking read from `fd` into the buffer (growing it only as far
    /// as a checked frame length requires). Returns bytes read, 0 at end of
    /// stream, -1 when nothing is readable.
    [[nodiscard]] long fill(int fd);

    /// Appends bytes as if read (tests and fuzzers).
    void feed(std::string_view bytes);

    /// Bytes buffered but not yet returned by next().
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }
    [[nodiscard]] std::size_t max_frame_size() const noexcept { return max_frame_; }

private:
    // Makes room for at least `want` more bytes after end_.
    void reserve_tail(std::size_t want);

    std::vector<char> buf_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    std::size_t need_ = frame_header_size;  // bytes the next frame needs in total
    std::size_t max_frame_;
};

/// FNV-1a 64-bit hash, used for message-type fingerprints.
[[nodiscard]] constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return h;
}

}  // namespace coproc::detail
