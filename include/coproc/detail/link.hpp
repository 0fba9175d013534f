// coproc/detail/link.hpp — one end of a messenger's stream: the socket, the
// frame reader, the startup handshake and peer-death detection. The untyped
// part of every messenger, compiled once in lib/link.cpp. Internal.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/uio.h>

#include "coproc/detail/deadline.hpp"
#include "coproc/detail/frame.hpp"
#include "coproc/detail/payload_slots.hpp"
#include "coproc/detail/unique_fd.hpp"

namespace coproc::detail {

/// Arrival flags: a page the two ends of a link share when they live in one
/// process tree (a pair made in this process, a forked worker). Every write
/// of one end raises the other's flag after the bytes are in the socket; an
/// end clears its own just before it reads the socket. So an end that read
/// its socket dry and finds its flag down knows, without a system call,
/// that nothing was written since: a receive with messages already queued
/// pops at once and still orders everything sent before it was called.
/// Ends without flags (spawned programs, pool workers, a user's fd) read the
/// socket on every receive.
struct ArrivalFlags {
    std::shared_ptr<std::atomic<std::uint32_t>> mine;   // raised by the peer's writes
    std::shared_ptr<std::atomic<std::uint32_t>> peers;  // raised by our writes
    [[nodiscard]] explicit operator bool() const noexcept { return mine != nullptr; }
};

/// One end of a messenger link: its stream socket, its descriptor side
/// channel (SOCK_SEQPACKET; carries the memfds of payload slots), and
/// optionally the arrival flags it shares with its peer.
struct LinkEnd {
    UniqueFd stream;
    UniqueFd side;
    ArrivalFlags arrivals{};
};
struct LinkPair {
    LinkEnd first;
    LinkEnd second;
};
/// Both ends of a new link, close-on-exec from creation. Throws SystemError.
[[nodiscard]] LinkPair make_link_pair();
/// Gives both ends of `pair` one shared page of arrival flags: only for ends
/// that stay in this process or its forked children (a spawned program
/// cannot see the page). Throws SystemError.
void share_arrival_flags(LinkPair& pair);

/// Tells a Link how its peer's death shows and what to raise then. The host
/// side of a worker implements it with the worker's pidfd.
class PeerWatch {
public:
    /// An fd that becomes readable when the peer has died, or -1. (It may
    /// also stay silent after the death: see peer_exited.)
    [[nodiscard]] virtual int liveness_fd() const noexcept = 0;
    /// Never blocks: true if the peer is known to have exited. The waits
    /// ask it at least once a second, whatever the liveness fd says.
    [[nodiscard]] virtual bool peer_exited() = 0;
    /// Throws the peer-is-gone exception (WorkerDied with the exit status).
    [[noreturn]] virtual void raise_peer_closed() = 0;
    /// The peer's process id, for error messages (0: unknown).
    [[nodiscard]] virtual long peer_pid() const noexcept { return 0; }
    /// An fd the link's blocking waits also watch (-1: none): when it is
    /// readable they call service() and go on waiting. A worker's captured
    /// output is read this way, on the host thread (worker_output.hpp).
    [[nodiscard]] virtual int service_fd() const noexcept { return -1; }
    virtual void service() {}

protected:
    PeerWatch() = default;
    PeerWatch(const PeerWatch&) = default;
    PeerWatch& operator=(const PeerWatch&) = default;
    ~PeerWatch() = default;
};

/// Receives the data frames Link::drain parses, in order. The views die with
/// the call: copy what you keep (or move from `frame.owned`, a large frame's
/// own buffer). The messenger implements it over its queue.
class FrameSink {
public:
    virtual void on_frame(const FrameView& frame) = 0;

protected:
    FrameSink() = default;
    FrameSink(const FrameSink&) = default;
    FrameSink& operator=(const FrameSink&) = default;
    ~FrameSink() = default;
};

/// Outcome of Link::send_frame.
enum class SendOutcome {
    sent,                 // every byte is in the socket
    timed_out,            // deadline passed before any byte was written: nothing sent
    timed_out_committed,  // deadline passed mid-frame: the rest is kept and written first by the next send
    peer_closed           // the peer closed its end (no exception here: the caller decides, see raise_peer_closed)
};

/// How a Link sends large payloads.
struct LargePayloadOptions {
    /// Payloads of at least this many bytes go through shared memory (0: never).
    std::size_t threshold = 0;
    /// The most shared memory one side maps for its outgoing payloads.
    std::size_t limit = 0;
};

class Link {
public:
    /// Takes the connected stream socket and sends the hello frame (a peer
    /// already gone is not an error here: what it sent stays readable).
    /// `side`: the link's descriptor channel (see make_link_sockets), or an
    /// empty fd: then no payload goes through shared memory, and a peer's
    /// shared-memory descriptor is a ProtocolError. Throws SystemError.
    /// `type_name`: typeid(Msg).name(), static storage (named in the hello,
    /// for the error when the peer's type differs).
    Link(UniqueFd fd, UniqueFd side, std::uint64_t fingerprint, std::size_t max_frame_size,
         LargePayloadOptions large = {}, ArrivalFlags arrivals = {}, std::string_view type_name = {});

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] std::size_t max_frame_size() const noexcept { return reader_.max_frame_size(); }
    /// Watches the peer's death through `watch`. Blocking reads then wake at
    /// least once a second to look at it. Throws SystemError.
    void set_watch(PeerWatch* watch);

    /// Sends one frame of `kind` on `channel` with `priority`: the header,
    /// then the payload that encode(out, gather) appends to `out` (its large
    /// runs left in place and listed in `gather`). A data, request or reply
    /// payload from the slot threshold on goes through a payload slot when
    /// one is free. Blocks until written (deadline nullopt) or the deadline
    /// passes; a closed peer is an outcome, never SIGPIPE. Throws
    /// ProtocolError if the frame exceeds the maximum frame size (nothing
    /// sent), SystemError, and what encode throws.
    template <class Encode>
    [[nodiscard]] SendOutcome send_frame(FrameKind kind, const Channel& channel, double priority, Encode&& encode,
                                         Deadline deadline) {
        out_.clear();
        gather_.clear();
        const std::size_t start = begin_frame(out_, kind, channel, priority);
        const std::size_t payload_start = out_.size();
        encode(out_, gather_);
        return send_begun_frame(kind, start, payload_start, deadline);
    }

    /// The batch form: one frame of `kind` on `channel` per element of
    /// `items`, with priority_of(item) and the payload encode(out, item)
    /// appends, all written with one system call. `count` receives the
    /// number of frames (none: nothing is sent). Blocks and throws like
    /// send_frame (an oversized frame: nothing of the batch is sent).
    template <class Range, class PriorityOf, class Encode>
    [[nodiscard]] SendOutcome send_frames(FrameKind kind, const Channel& channel, const Range& items,
                                          PriorityOf&& priority_of, Encode&& encode, std::size_t& count,
                                          Deadline deadline) {
        out_.clear();
        count = 0;
        for (const auto& item : items) {
            const std::size_t start = begin_frame(out_, kind, channel, priority_of(item));
            encode(out_, item);
            finish_frame(out_, start, max_frame_size());
            ++count;
        }
        if (count == 0) return SendOutcome::sent;
        return write(out_, deadline);
    }

    /// A control frame (error, close: no channel, priority 0) with `payload`.
    /// Blocks and throws like send_frame.
    [[nodiscard]] SendOutcome send_control(FrameKind kind, std::string_view payload, Deadline deadline) {
        return send_frame(
            kind, Channel{}, 0.0, [payload](std::string& out, Gather&) { out.append(payload); }, deadline);
    }

    /// Never blocks. Reads what is readable now and parses every complete
    /// frame: data frames go to `sink` in order; an error or close frame is
    /// raised (ProtocolError, the remote exception, ResourceRequestedClose)
    /// after the frames before it were delivered, and the frames after it stay
    /// buffered for the next call. Returns the number of data frames delivered.
    std::size_t drain(FrameSink& sink);

    /// No system call: true when this end read its socket dry, nothing is
    /// buffered, and its peer wrote nothing since (arrival flags; always
    /// false without them). A drain() would then deliver nothing. Never use
    /// it to decide whether to wait: a peer's exit raises no flag.
    [[nodiscard]] bool nothing_new() const noexcept;

    /// Never blocks: true if a complete frame is buffered or the socket is
    /// readable now (data or end of file).
    [[nodiscard]] bool readable_now();

    /// Blocks until more may be readable, the peer died, or the deadline.
    /// False on deadline. Call drain() and peer_gone() after it.
    [[nodiscard]] bool wait(Deadline deadline);

    /// Untimed wait that is also the read: returns at once if a complete
    /// frame is buffered or the peer is gone, else blocks in recv() until data
    /// arrives (one system call where poll+recv would take two or three).
    /// With a watch, wakes at least every second to check the peer's death.
    /// Call drain() and peer_gone() after it.
    void wait_for_data();

    /// Gives a large frame's buffer back for reuse by the next large frame.
    void recycle(Bytes&& bytes) noexcept { reader_.recycle(std::move(bytes)); }

    /// True when nothing more will ever arrive (EOF, or the watched peer died
    /// and the socket is drained).
    [[nodiscard]] bool peer_gone() const noexcept { return eof_ || (watch_fired_ && dry_); }

    /// Throws WorkerDied (with a watch) or ChannelClosed.
    [[noreturn]] void raise_peer_closed();
    /// " (worker pid N)" with a watch that knows the pid, else "": for messages.
    [[nodiscard]] std::string peer_label() const;

    /// Startup handshake: waits for the peer's hello frame and leaves anything
    /// after it buffered. False if the peer closed or the deadline passed;
    /// ProtocolError on a mismatch.
    [[nodiscard]] bool await_hello(Deadline deadline);

    /// Moves readable bytes into the buffer without parsing them, so a peer
    /// blocked writing to us can go on (used while joining a worker). Never blocks.
    void buffer_incoming();

    /// Bytes of shared memory mapped for outgoing payloads (inspection, tests).
    [[nodiscard]] std::size_t shared_memory_mapped() const noexcept { return slots_out_.mapped_bytes(); }

private:
    // Writes whole frames (the hello, a batch). Blocks like send_frame.
    SendOutcome write(std::string_view frames, Deadline deadline);
    // Sends the one frame begun at `start` in out_, whose payload is out_'s
    // bytes from `payload_start` with gather_'s runs inserted: through a
    // payload slot when it is a large data frame and a slot is free, else
    // with one gathering send. Finishes the frame header.
    SendOutcome send_begun_frame(FrameKind kind, std::size_t start, std::size_t payload_start, Deadline deadline);
    std::size_t drain_frames(FrameSink& sink);  // drain() but the service
    // The watch's service fd; -1 without a watch, or when it has none.
    [[nodiscard]] int service_fd() const noexcept { return watch_ != nullptr ? watch_->service_fd() : -1; }
    void handle_hello(const FrameView& frame);
    // Reads the socket into the reader (blocking or not), lowering our
    // arrival flag first: whatever the peer writes after this raises it again.
    long fill_reader(bool blocking);
    // Writes the segments in order (consuming them); returns how many bytes
    // were written before the deadline. Sets `closed` (and stops) if the
    // peer closed its end.
    std::size_t write_until(std::span<iovec> segments, Deadline deadline, bool& closed);
    SendOutcome send_segments(std::span<iovec> segments, std::size_t total, Deadline deadline);
    // Sends through a slot if one is free; nullopt if the socket must carry it.
    std::optional<SendOutcome> send_through_slot(std::size_t start, std::size_t payload_start, std::size_t payload,
                                                 Deadline deadline);
    // Calls piece(data, size) for out_'s bytes from `from` on, with gather_'s
    // runs in their places, in order (empty pieces included).
    template <class F>
    void for_each_piece(std::size_t from, F&& piece) const;
    // A frame whose payload is in a payload slot, as the sink sees it.
    void deliver_from_slot(FrameSink& sink, const FrameView& frame);

    UniqueFd fd_;
    UniqueFd side_;  // SOCK_SEQPACKET: slots' memfds, one per datagram (see payload_slots.hpp)
    FrameReader reader_;
    std::uint64_t fingerprint_;
    std::string_view type_name_;  // static storage (typeid's name)
    PeerWatch* watch_ = nullptr;
    bool hello_seen_ = false;
    bool eof_ = false;
    bool watch_fired_ = false;
    bool dry_ = false;
    bool skip_read_ = false;  // the last blocking read was short: the socket is empty
    std::string out_;
    std::string pending_;  // the unwritten rest of a frame whose send timed out
    Gather gather_;
    std::vector<iovec> iov_;
    std::size_t slot_threshold_;
    SlotSender slots_out_;
    SlotReceiver slots_in_;
    ArrivalFlags arrivals_;
};

}  // namespace coproc::detail
