// libFuzzer target: what a pool's listener decodes from a peer on the
// network. Arbitrary bytes must parse or be rejected (nullopt, or a
// ProtocolError from the pool message decoder), with bounded allocation:
// never a crash. What parses must survive a round trip.
#include <coproc/codec.hpp>
#include <coproc/detail/pool_worker.hpp>
#include <coproc/detail/remote_hub.hpp>
#include <coproc/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "remote_wire.hpp"

using namespace coproc::detail::remote;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto frame = parse_frame(input);
    if (!frame) return 0;
    switch (frame->kind) {
        case Kind::hello:
            if (const auto hello = decode_hello(frame->body)) {
                Hello want;
                want.wire_abi = this_wire_abi();
                (void)hello_mismatch(*hello, want);
                if (hello->version == protocol_version && decode_hello(encode_hello(*hello))->label != hello->label)
                    std::abort();  // a round trip changed it
            }
            break;
        case Kind::welcome:
            if (const auto w = decode_welcome(frame->body)) {
                if (decode_welcome(encode_welcome(*w))->heartbeat_timeout != w->heartbeat_timeout) std::abort();
            }
            break;
        case Kind::batch: {
            std::vector<std::string_view> parts;
            if (split_batch(frame->body, parts)) {
                std::vector<std::string> copies(parts.begin(), parts.end());
                // Packed again whole, the same messages in the same order.
                coproc::detail::PackedMessages packed;
                for (const auto& c : copies) packed.add([&c](std::string& bytes) { bytes.append(c); });
                const auto again = pool_frames(packed.bytes(), std::size_t{1} << 30);
                std::vector<std::string_view> back;
                if (copies.size() > 1 &&
                    (again.size() != 1 || !split_batch(std::string_view(again[0]).substr(1), back) ||
                     std::vector<std::string>(back.begin(), back.end()) != copies))
                    std::abort();
            }
            break;
        }
        case Kind::pool:
            try {
                (void)coproc::decode<coproc::detail::PoolMessage<int, long>>(frame->body);
                (void)coproc::decode<coproc::detail::PoolMessage<std::string, std::string>>(frame->body);
            } catch (const coproc::ProtocolError&) {
                // rejected: fine
            }
            break;
        default: break;
    }
    return 0;
}
