// coproc/detail/frame.hpp — the wire format. Internal.
//
// A frame is a fixed 32-byte header, then the channel name (string channels
// only), then the payload. All header fields are little-endian:
//
//   offset size field
//        0    1 magic 0xC5
//        1    1 kind (FrameKind)
//        2    1 channel kind: 0 none, 1 integer, 2 string
//        3    1 flags: bit 0 = the payload is a shared-memory descriptor
//                (detail/payload_slots.hpp; data, request and reply frames only);
//                other bits must be 0
//        4    4 channel name length (string channels; 0 otherwise)
//        8    8 channel integer (integer channels; 0 otherwise)
//       16    8 priority, IEEE-754 binary64 (+inf = none; never NaN)
//       24    8 payload length
//
// Every length is checked against the reader's maximum frame size before any
// allocation. A frame is written with one send() (header and body together);
// the reader parses every complete frame out of one read().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <memory>
#include <utility>

#include "coproc/channel.hpp"
#include "coproc/detail/bytes.hpp"

namespace coproc::detail {

enum class FrameKind : std::uint8_t { hello = 1, data = 2, request = 3, reply = 4, error = 5, close = 6 };

inline constexpr std::size_t frame_header_size = 32;
inline constexpr std::uint8_t frame_magic = 0xC5;
inline constexpr std::uint32_t protocol_version = 4;
inline constexpr std::uint8_t frame_flag_slot = 1;
/// Default largest frame (header excluded) a reader accepts: 256 MiB.
inline constexpr std::size_t default_max_frame_size = std::size_t{256} << 20;

/// A decoded frame; its views point into the reader's buffer and stay valid
/// until the reader's next fill() or next().
struct FrameView {
    // A constructor, not an aggregate: next() builds one in place inside its
    // optional, without zero-filling the whole struct first (it showed in
    // profiles of small-message streams).
    FrameView(FrameKind frame_kind, double frame_priority, Channel frame_channel, std::string_view frame_payload,
              bool is_in_slot = false, Bytes* owned_buffer = nullptr) noexcept
        : kind(frame_kind),
          priority(frame_priority),
          channel(std::move(frame_channel)),
          payload(frame_payload),
          in_slot(is_in_slot),
          owned(owned_buffer) {}

    FrameKind kind;
    double priority;
    Channel channel;
    std::string_view payload;
    /// The payload is a shared-memory descriptor (the Link resolves it).
    bool in_slot = false;
    /// For a large frame read straight into its own buffer: that buffer, which
    /// the receiver may move from (payload keeps pointing into it). Else null.
    Bytes* owned = nullptr;
};

/// Frames whose body is larger than this are read directly into a buffer of
/// their own instead of through the reader's buffer (one copy less).
inline constexpr std::size_t direct_read_threshold = std::size_t{256} * 1024;

/// Appends the header and channel name of a frame whose payload the caller
/// appends next; returns the frame's start offset for finish_frame.
std::size_t begin_frame(std::string& out, FrameKind kind, const Channel& channel, double priority);
/// Writes the payload length of the frame begun at `start`: the bytes after
/// it in `out` plus `gathered` bytes sent from elsewhere. Throws
/// ProtocolError when the frame body exceeds `max_frame_size` (and drops the
/// frame from `out`).
void finish_frame(std::string& out, std::size_t start, std::size_t max_frame_size, std::size_t gathered = 0);
/// Marks the frame begun at `start` as carrying a shared-memory descriptor.
void mark_slot_frame(std::string& out, std::size_t start) noexcept;
/// Appends a whole frame with the given payload.
void append_frame(std::string& out, FrameKind kind, const Channel& channel, double priority, std::string_view payload,
                  std::size_t max_frame_size);

/// The hello frame: protocol version, message-type fingerprint, then the
/// message type's (mangled) name, for the error when the types differ. Built
/// without allocating (a worker sends it first thing after fork, where each
/// heap page written is a copy-on-write fault).
inline constexpr std::size_t hello_payload_size = 12;  // without the name
inline constexpr std::size_t hello_max_name = 240;     // longer names are cut
class HelloFrame {
public:
    [[nodiscard]] const char* data() const noexcept { return bytes_.data(); }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    friend HelloFrame hello_frame(std::uint64_t, std::string_view) noexcept;
    std::array<char, frame_header_size + hello_payload_size + hello_max_name> bytes_{};
    std::size_t size_ = 0;
};
/// `type_name`: typeid(Msg).name() (static storage, nothing to allocate).
[[nodiscard]] HelloFrame hello_frame(std::uint64_t fingerprint, std::string_view type_name = {}) noexcept;
/// Throws ProtocolError on a version or fingerprint mismatch (naming both
/// message types, demangled, when the peer sent its own), or bad bytes.
void check_hello(std::string_view payload, std::uint64_t fingerprint, std::string_view type_name = {});
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

    /// One blocking read (the socket's SO_RCVTIMEO may end it early: then -1).
    [[nodiscard]] long fill_blocking(int fd);

    /// True if the last fill got less than it asked for: the socket was empty
    /// after it, so another read now would only say EAGAIN.
    [[nodiscard]] bool last_fill_short() const noexcept { return last_short_; }

    /// True if next() may return a frame without reading (conservative).
    [[nodiscard]] bool has_complete() const noexcept {
        if (direct_) return large_filled_ == large_.size();
        const std::size_t avail = end_ - begin_;
        return avail >= frame_header_size && avail >= need_;
    }

    /// Gives back a large frame's buffer once its payload was decoded, to be
    /// reused by the next large frame (freeing and re-faulting megabytes per
    /// message costs more than copying them).
    void recycle(Bytes&& bytes) noexcept {
        if (bytes.heap_capacity() > spare_.heap_capacity()) spare_ = std::move(bytes);
    }

    /// Appends bytes as if read (tests and fuzzers).
    void feed(std::string_view bytes);

    /// Bytes received but not yet returned by next().
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_ + (direct_ ? large_filled_ : 0); }
    [[nodiscard]] std::size_t max_frame_size() const noexcept { return max_frame_; }

private:
    // Makes room for at least `want` more bytes after end_.
    void reserve_tail(std::size_t want);
    long fill_impl(int fd, bool block);

    std::unique_ptr<char[]> buf_;  // not zero-filled: only bytes we read are ever looked at
    std::size_t cap_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    std::size_t need_ = frame_header_size;  // bytes the next frame needs in total
    std::size_t max_frame_;

    // Direct mode: the body (channel name + payload) of one large frame.
    bool direct_ = false;
    Bytes large_;
    std::size_t large_filled_ = 0;
    FrameKind large_kind_ = FrameKind::data;
    double large_priority_ = 0;
    unsigned char large_chan_kind_ = 0;
    std::uint64_t large_chan_int_ = 0;
    std::size_t large_name_len_ = 0;
    Bytes spare_;  // a recycled large-frame buffer
    bool last_short_ = false;
    bool filled_once_ = false;  // a read filled the buffer: read 64 KiB at a time from now on
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

/// The hello fingerprint of message type T, computed once at program start:
/// a forked worker then reads a number instead of the type's name (a page of
/// the C++ runtime it would otherwise fault in).
template <class T>
inline const std::uint64_t type_fingerprint = fnv1a(typeid(T).name());

}  // namespace coproc::detail
