// libFuzzer target: the frame decoder. Arbitrary bytes, fed in arbitrary
// chunks, must give frames or a ProtocolError: never a crash, a hang, or an
// allocation beyond the maximum frame size.
#include <coproc/detail/frame.hpp>
#include <coproc/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // First byte: chunk size for feeding, so partial frames are exercised.
    const std::size_t chunk = 1 + data[0] % 64;
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    coproc::detail::FrameReader reader(1 << 16);
    try {
        for (std::size_t off = 0; off < input.size(); off += chunk) {
            reader.feed(input.substr(off, chunk));
            while (auto frame = reader.next()) {
                if (frame->kind == coproc::detail::FrameKind::hello) {
                    coproc::detail::check_hello(frame->payload, 0x1234);
                } else if (frame->kind == coproc::detail::FrameKind::error) {
                    try {
                        coproc::detail::throw_error_payload(frame->payload);
                    } catch (const coproc::ProtocolError&) {
                        throw;
                    } catch (const std::exception&) {
                        // the decoded remote exception: fine
                    }
                }
            }
        }
    } catch (const coproc::ProtocolError&) {
        // rejected: fine
    }
    return 0;
}
