// lib/remote_wire.hpp — the frames a pool and its remote workers exchange
// over ZeroMQ (ROUTER on the host, DEALER in each worker): one ZeroMQ frame
// per message, a kind byte then its body; pool messages handed over
// together travel packed in batch frames (fewer, larger frames: less work
// per task for ZeroMQ's threads). Parsing never trusts its input:
// what does not parse is nullopt, to be dropped and counted. Internal to
// libcoproc-bus (lib/remote_hub.cpp, lib/remote_worker.cpp); fuzzed by
// tests/fuzz/fuzz_remote.cpp.
//
//   worker -> host: hello (first), pool (an encoded PoolMessage), batch
//                   (several: each a u32 length, then its bytes), heartbeat
//   host -> worker: welcome or refuse (answering hello), pool, batch,
//                   heartbeat, close (exit cleanly), lost (you were given
//                   up: rejoin)
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coproc::detail::remote {

enum class Kind : std::uint8_t {
    hello = 1,
    welcome = 2,
    refuse = 3,
    pool = 4,
    heartbeat = 5,
    close = 6,
    lost = 7,
    batch = 8
};

/// Bumped whenever a frame's layout changes.
constexpr std::uint32_t protocol_version = 2;
/// Pool messages are packed into batch frames of at most this many bytes;
/// a larger message travels alone.
constexpr std::size_t batch_bytes = std::size_t{64} << 10;
/// Strings in a hello longer than this make it malformed.
constexpr std::size_t max_hello_string = 4096;

struct Frame {
    Kind kind;
    std::string_view body;  // into the parsed bytes
};
[[nodiscard]] std::optional<Frame> parse_frame(std::string_view bytes) noexcept;
[[nodiscard]] std::string make_frame(Kind kind, std::string_view body = {});

/// The frames that carry `packed` (encoded pool messages, each a u32
/// length then its bytes: PackedMessages::bytes()) in order: runs of them
/// in batch frames of at most `limit` bytes, a message alone in a pool
/// frame. Throws std::invalid_argument if `packed` is not so made.
[[nodiscard]] std::vector<std::string> pool_frames(std::string_view packed, std::size_t limit);
/// Appends the messages of a batch frame's body to `out`, in order; false
/// (and `out` as it was) if the body is malformed.
[[nodiscard]] bool split_batch(std::string_view body, std::vector<std::string_view>& out);

/// What a worker says first: who it is and what its messages look like.
struct Hello {
    std::uint32_t version = protocol_version;
    std::string wire_abi;     // this_wire_abi(): byte order and sizes cereal's binary archive depends on
    std::string task_type;    // typeid(Task).name(): the compiler's mangled name
    std::string result_type;  // typeid(Result).name()
    std::uint64_t fingerprint = 0;
    std::string label;  // "host:pid", for messages
};
[[nodiscard]] std::string encode_hello(const Hello& hello);
[[nodiscard]] std::optional<Hello> decode_hello(std::string_view body) noexcept;
/// Empty if `got` may join a pool expecting `want`; else why not (one line).
[[nodiscard]] std::string hello_mismatch(const Hello& got, const Hello& want);
/// Byte order, sizeof(long), sizeof(long double), sizeof(wchar_t): cereal's
/// binary archive writes values as the machine holds them.
[[nodiscard]] std::string this_wire_abi();

/// The host's answer to a good hello: the heartbeat both sides keep.
struct Welcome {
    std::chrono::milliseconds heartbeat_interval{1000};
    std::chrono::milliseconds heartbeat_timeout{5000};
    std::uint64_t max_message_size = 0;  // the host's limit on a frame; 0: none
};
[[nodiscard]] std::string encode_welcome(const Welcome& welcome);
[[nodiscard]] std::optional<Welcome> decode_welcome(std::string_view body) noexcept;

}  // namespace coproc::detail::remote
