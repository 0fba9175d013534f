// lib/remote_message.hpp — a remote frame (lib/remote_wire.hpp) as a
// ZeroMQ message, for both sides of the wire (lib/remote_hub.cpp,
// lib/remote_worker.cpp). Internal to libcoproc-bus.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include <zmq.hpp>

namespace coproc::detail::remote {

/// Frames at least this large are handed to ZeroMQ without a copy.
constexpr std::size_t zero_copy_bytes = std::size_t{8} << 10;

/// `frame` as a message. A large frame's bytes are handed over, not copied:
/// ZeroMQ frees them once sent (from its I/O thread), or when the message
/// is closed unsent. A small one is copied, which costs ZeroMQ less.
[[nodiscard]] inline zmq::message_t frame_message(std::string frame) {
    if (frame.size() < zero_copy_bytes) return {frame.data(), frame.size()};
    auto owned = std::make_unique<std::string>(std::move(frame));
    zmq::message_t msg(
        owned->data(), owned->size(), [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned.get());
    (void)owned.release();  // the message owns it now
    return msg;
}

}  // namespace coproc::detail::remote
