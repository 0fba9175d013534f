// coproc/data_message.hpp — a received data message with its flags
// (Python coproc's DataMessage).
//
//   auto m = worker.receive_message_blocking("jobs");
//   if (m.request_reply) worker.send_reply(m.payload, "jobs");  // a reply is owed
//
// The message-level calls of a messenger (receive_message_blocking,
// receive_available_messages, receive_remaining_messages,
// pop_message_from_queue, send_data_message) hand out or take these; the
// plain calls hand out only the payload. A value type; no I/O.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include "coproc/channel.hpp"

namespace coproc {

template <class Msg>
struct DataMessage {
    Msg payload{};
    /// Sent with send_request (or send_data_message(..., true, false)): the
    /// sender counts it in remaining() until a reply comes back.
    bool request_reply = false;
    /// Sent with send_reply: popping it lowers the receiver's remaining().
    bool is_reply = false;
    /// The channel it was sent on.
    Channel channel{};
    // Its priority is coproc::message_priority(payload), as the sender read it.
};

}  // namespace coproc
