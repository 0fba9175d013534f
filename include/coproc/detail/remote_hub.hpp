// coproc/detail/remote_hub.hpp — what a Pool needs from the workers it
// reaches over the network, without knowing the network: a hub (made by
// coproc::listen_for_workers, coproc/remote_pool.hpp, in libcoproc-bus)
// that admits workers, forwards their messages as events and sends them
// chunks. The pool sees a remote worker as an id; the hub owns sockets,
// keys, heartbeats and loss detection. Internal, but
// coproc::RemoteWorkers is the public face users hold.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "coproc/detail/endian.hpp"

namespace coproc {

/// What the remote side of a pool has seen so far (never decreasing).
struct RemoteStats {
    std::uint64_t joined = 0;     // workers admitted (a rejoin counts again)
    std::uint64_t lost = 0;       // workers declared lost (silent past the heartbeat timeout, or cut)
    std::uint64_t refused = 0;    // connections refused: a key not listed (ZAP), or a handshake that did not match
    std::uint64_t malformed = 0;  // frames dropped: not our framing, unknown kind, a bad hello or batch, out of turn
    std::uint64_t late = 0;       // frames from a worker already declared lost: ignored
    std::uint64_t connected = 0;  // workers joined now
};

/// The listening side of a pool's remote workers: made by
/// coproc::listen_for_workers, put in PoolOptions::remote. Thread-safe.
class RemoteWorkers {
public:
    virtual ~RemoteWorkers() = default;
    RemoteWorkers(const RemoteWorkers&) = delete;
    RemoteWorkers& operator=(const RemoteWorkers&) = delete;

    [[nodiscard]] virtual RemoteStats stats() const = 0;
    /// The endpoint workers connect to: the bound address with its port
    /// resolved ("tcp://127.0.0.1:*" becomes "tcp://127.0.0.1:41235").
    /// Empty until the pool has started.
    [[nodiscard]] virtual std::string endpoint() const = 0;

protected:
    RemoteWorkers() = default;
};

namespace detail {

/// A buffer reused from message to message keeps at most this much memory
/// between uses (one large message does not pin its size for good).
constexpr std::size_t kept_buffer_bytes = std::size_t{1} << 20;

/// Empties `buffer` for reuse; frees it if it grew past kept_buffer_bytes.
inline void clear_for_reuse(std::string& buffer) noexcept {
    if (buffer.capacity() > kept_buffer_bytes)
        std::string().swap(buffer);
    else
        buffer.clear();
}

/// Pool messages packed back to back, each a u32 length (little-endian)
/// then its bytes: the body of a remote batch frame. Whoever sends (the
/// pool, a remote worker) encodes into one of these, reused, so no message
/// needs a buffer of its own. Not thread-safe.
class PackedMessages {
public:
    /// Appends one message: `encode(std::string&)` appends its bytes.
    /// Throws what `encode` throws, or std::length_error past 4 GiB; the
    /// pack is then as it was.
    template <class Encode>
    void add(Encode&& encode) {
        const std::size_t at = bytes_.size();
        bytes_.append(4, '\0');
        try {
            encode(bytes_);
            if (bytes_.size() - at - 4 > std::numeric_limits<std::uint32_t>::max())
                throw std::length_error("coproc: a remote pool message over 4 GiB");
        } catch (...) {
            bytes_.resize(at);
            throw;
        }
        put_le(bytes_.data() + at, static_cast<std::uint32_t>(bytes_.size() - at - 4));
    }
    void clear() noexcept { clear_for_reuse(bytes_); }
    [[nodiscard]] std::string_view bytes() const noexcept { return bytes_; }

private:
    std::string bytes_;
};

/// The pool's side of a RemoteWorkers. Called by one thread (the pool's).
class RemoteHub : public RemoteWorkers {
public:
    struct Event {
        enum class Kind { joined, message, lost };
        Kind kind = Kind::message;
        std::uint64_t worker = 0;  // the hub's id of it; a rejoin gets a new one
        // message: an encoded pool message; joined: its label (host:pid).
        // Valid until the next take_events.
        std::string_view payload;
    };
    /// Binds and starts serving: workers are checked against these type
    /// names and fingerprint. Throws Error (bad endpoint, address in use,
    /// no CURVE in libzmq). Once.
    virtual void start(std::string_view task_type, std::string_view result_type, std::uint64_t fingerprint) = 0;
    /// Readable while events may wait (level-triggered; take_events may
    /// then find none, and the hub does its reading there); -1 before start.
    [[nodiscard]] virtual int fd() const noexcept = 0;
    /// Moves the waiting events to `out` (appended), oldest first; their
    /// payloads stay valid until the next call. Never blocks.
    virtual void take_events(std::vector<Event>& out) = 0;
    /// Queues `messages` (encoded pool messages, in order) for `worker`.
    /// Never blocks; dropped if the worker is gone (its loss is an event).
    virtual void send(std::uint64_t worker, const PackedMessages& messages) = 0;
    /// The pool gives `worker` up (a task timeout): it is told, its later
    /// frames are ignored, and it may rejoin. No lost event follows.
    virtual void drop(std::uint64_t worker) = 0;
    /// Tells every worker to close, stops serving. Idempotent; never throws.
    virtual void stop() noexcept = 0;
};

}  // namespace detail
}  // namespace coproc
