// One end of a messenger's stream: handshake, drain, waits and sends.
#include "coproc/detail/link.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <new>

#include "coproc/error.hpp"
#include "socket.hpp"

#include <algorithm>
#include <cstring>

namespace coproc::detail {

namespace {
// A drain stops after this many bytes even if more is readable, so a peer
// that writes faster than we parse cannot keep one call busy forever.
constexpr std::size_t drain_budget = std::size_t{64} << 20;
}  // namespace

LinkPair make_link_pair() {
    auto stream = make_socketpair(SOCK_STREAM);
    auto side = make_socketpair(SOCK_SEQPACKET);
    return {{std::move(stream.first), std::move(side.first)}, {std::move(stream.second), std::move(side.second)}};
}

void share_arrival_flags(LinkPair& pair) {
    // One page, the two flags a cache line apart: each end writes the other's.
    constexpr std::size_t page = 4096;
    void* mem = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw_system_error(errno, "mmap");
    using Flag = std::atomic<std::uint32_t>;
    const std::shared_ptr<void> owner(mem, [](void* p) { ::munmap(p, page); });
    auto* first = ::new (mem) Flag(0);
    auto* second = ::new (static_cast<char*>(mem) + 64) Flag(0);
    pair.first.arrivals = {std::shared_ptr<Flag>(owner, first), std::shared_ptr<Flag>(owner, second)};
    pair.second.arrivals = {std::shared_ptr<Flag>(owner, second), std::shared_ptr<Flag>(owner, first)};
}

Link::Link(UniqueFd fd, UniqueFd side, std::uint64_t fingerprint, std::size_t max_frame_size, LargePayloadOptions large,
           ArrivalFlags arrivals, std::string_view type_name)
    : fd_(std::move(fd)),
      side_(std::move(side)),
      reader_(max_frame_size),
      fingerprint_(fingerprint),
      type_name_(type_name),
      slot_threshold_(side_ ? large.threshold : 0),
      slots_out_(large.limit),
      arrivals_(std::move(arrivals)) {
    const HelloFrame hello = hello_frame(fingerprint, type_name_);
    // peer_closed: the peer already ran and exited (a worker can be that
    // fast). What it sent is still in our socket; the next send will raise.
    (void)write(std::string_view(hello.data(), hello.size()), std::nullopt);
}

std::size_t Link::write_until(std::span<iovec> segments, Deadline deadline, bool& closed) {
    std::size_t off = 0;
    while (!segments.empty()) {
        if (segments.front().iov_len == 0) {
            segments = segments.subspan(1);
            continue;
        }
        std::size_t n = 0;
        switch (send_some(fd_.get(), segments, n, -1)) {
            case SendResult::ok:
                off += n;
                // After the bytes are in the socket: the peer reads them on its next receive.
                if (arrivals_ && n > 0) arrivals_.peers->store(1, std::memory_order_release);
                while (n > 0) {
                    iovec& first = segments.front();
                    const std::size_t used = std::min(n, first.iov_len);
                    first.iov_base = static_cast<char*>(first.iov_base) + used;
                    first.iov_len -= used;
                    n -= used;
                    if (first.iov_len == 0) segments = segments.subspan(1);
                }
                break;
            case SendResult::peer_closed: closed = true; return off;
            case SendResult::would_block: {
                // While we wait for room, take in what the peer writes: a peer
                // blocked sending to us could otherwise never read what we
                // send (each small frame costs ~1 KiB of socket buffer, so a
                // few hundred in flight each way suffice to deadlock).
                const unsigned ready = wait_io(fd_.get(), !eof_, deadline, service_fd());
                if (ready == io_none) return off;
                if ((ready & io_service) != 0) watch_->service();
                if ((ready & io_readable) != 0) buffer_incoming();
                break;
            }
        }
    }
    return off;
}

SendOutcome Link::send_segments(std::span<iovec> segments, std::size_t total, Deadline deadline) {
    bool closed = false;
    if (!pending_.empty()) {
        iovec rest{pending_.data(), pending_.size()};
        const std::size_t n = write_until(std::span<iovec>(&rest, 1), deadline, closed);
        pending_.erase(0, n);
        if (closed) return SendOutcome::peer_closed;
        if (!pending_.empty()) return SendOutcome::timed_out;
    }
    const std::size_t n = write_until(segments, deadline, closed);
    if (closed) return SendOutcome::peer_closed;
    if (n == total) return SendOutcome::sent;
    if (n == 0) return SendOutcome::timed_out;
    // Part of a frame is in the stream: it cannot be taken back, so the rest
    // is written before anything else (the next frame stays intact). The
    // segments may point into the caller's message: keep a copy.
    pending_.clear();
    for (const iovec& v : segments) pending_.append(static_cast<const char*>(v.iov_base), v.iov_len);
    return SendOutcome::timed_out_committed;
}

SendOutcome Link::write(std::string_view frames, Deadline deadline) {
    iovec one{const_cast<char*>(frames.data()), frames.size()};
    return send_segments(std::span<iovec>(&one, 1), frames.size(), deadline);
}

template <class F>
void Link::for_each_piece(std::size_t from, F&& piece) const {
    for (const auto& run : gather_.runs) {
        piece(out_.data() + from, run.at - from);
        piece(run.data, run.size);
        from = run.at;
    }
    piece(out_.data() + from, out_.size() - from);
}

std::optional<SendOutcome> Link::send_through_slot(std::size_t start, std::size_t payload_start, std::size_t payload,
                                                   Deadline deadline) {
    const auto grant = slots_out_.acquire(payload);
    if (!grant) return std::nullopt;
    // A slot's first descriptor needs its memfd at the peer: it goes first,
    // alone in one datagram on the side channel (never with the stream's
    // bytes, so the stream is read with plain recv()). If the side channel
    // refuses it, the stream carries this payload.
    if (!slots_out_.send_memfd(grant, side_.get())) {
        slots_out_.abandon(grant);
        return std::nullopt;
    }
    // The one copy of the payload: message (and buffer) into the slot.
    char* dest = grant.data;
    for_each_piece(payload_start, [&dest](const char* data, std::size_t size) {
        if (size != 0) std::memcpy(dest, data, size);
        dest += size;
    });
    out_.resize(payload_start);
    mark_slot_frame(out_, start);
    const SlotDescriptor d = slots_out_.describe(grant, payload);
    out_.resize(payload_start + slot_descriptor_size);
    encode_slot_descriptor(out_.data() + payload_start, d);
    finish_frame(out_, start, reader_.max_frame_size());
    iovec one{out_.data(), out_.size()};
    SendOutcome outcome = SendOutcome::timed_out;
    try {
        outcome = send_segments(std::span<iovec>(&one, 1), out_.size(), deadline);
    } catch (...) {
        slots_out_.abandon(grant);  // a system error: nothing refers to the slot
        throw;
    }
    if (outcome == SendOutcome::timed_out || outcome == SendOutcome::peer_closed)
        slots_out_.abandon(grant);  // nothing (or nobody) refers to the slot
    else
        slots_out_.sent(grant);
    return outcome;
}

SendOutcome Link::send_begun_frame(FrameKind kind, std::size_t start, std::size_t payload_start, Deadline deadline) {
    const std::size_t payload = out_.size() - payload_start + gather_.bytes;
    // Only data frames may name a slot: a control frame's payload is read
    // where it is parsed.
    const bool data_frame = kind == FrameKind::data || kind == FrameKind::request || kind == FrameKind::reply;
    if (data_frame && slot_threshold_ != 0 && payload >= slot_threshold_ && payload <= reader_.max_frame_size()) {
        if (const auto outcome = send_through_slot(start, payload_start, payload, deadline)) return *outcome;
    }
    finish_frame(out_, start, reader_.max_frame_size(), gather_.bytes);
    if (gather_.runs.empty()) return write(out_, deadline);
    iov_.clear();
    for_each_piece(0, [this](const char* data, std::size_t size) { iov_.push_back({const_cast<char*>(data), size}); });
    return send_segments(iov_, out_.size() + gather_.bytes, deadline);
}

void Link::handle_hello(const FrameView& frame) {
    if (hello_seen_) throw ProtocolError("coproc: unexpected second hello frame");
    if (frame.kind != FrameKind::hello) throw ProtocolError("coproc: the peer did not start with a hello frame");
    check_hello(frame.payload, fingerprint_, type_name_);
    hello_seen_ = true;
}

void Link::set_watch(PeerWatch* watch) {
    watch_ = watch;
    if (watch_ != nullptr) set_receive_timeout(fd_.get(), std::chrono::seconds(1));
}

void Link::wait_for_data() {
    if (peer_gone() || reader_.has_complete()) return;
    // A watch with a service fd: poll both (a blocking read would not see it).
    if (service_fd() >= 0) {
        (void)wait(std::nullopt);
        return;
    }
    const long n = fill_reader(true);
    if (n > 0) {
        dry_ = false;
        skip_read_ = reader_.last_fill_short();
    } else if (n == 0) {
        eof_ = dry_ = true;
    } else if (watch_ != nullptr && !watch_fired_) {
        // The heartbeat: nothing for a second; has the peer died meanwhile?
        if (watch_->peer_exited()) {
            watch_fired_ = true;
            dry_ = false;
        }
    }
}

std::size_t Link::drain(FrameSink& sink) {
    if (service_fd() < 0) return drain_frames(sink);
    // Serviced after the socket was read (even when a frame throws): every
    // line the peer wrote before sending a message now in hand is in its
    // pipe by then, so it is delivered before that message is received.
    struct ServiceAfter {
        PeerWatch* watch;
        explicit ServiceAfter(PeerWatch* w) noexcept : watch(w) {}
        ServiceAfter(const ServiceAfter&) = delete;
        ServiceAfter& operator=(const ServiceAfter&) = delete;
        ~ServiceAfter() { watch->service(); }
    } after{watch_};
    return drain_frames(sink);
}

std::size_t Link::drain_frames(FrameSink& sink) {
    std::size_t delivered = 0;
    std::size_t read_total = 0;
    // A short read just now means the socket is empty: do not ask it again.
    bool socket_empty = std::exchange(skip_read_, false);
    for (;;) {
        while (auto frame = reader_.next()) {
            if (!hello_seen_ || frame->kind == FrameKind::hello) {
                handle_hello(*frame);
                continue;
            }
            switch (frame->kind) {
                case FrameKind::data:
                case FrameKind::request:
                case FrameKind::reply:
                    if (frame->in_slot)
                        deliver_from_slot(sink, *frame);
                    else
                        sink.on_frame(*frame);
                    ++delivered;
                    break;
                case FrameKind::error: throw_error_payload(frame->payload);
                case FrameKind::close: throw ResourceRequestedClose();
                case FrameKind::hello: break;  // handled above
            }
        }
        if (eof_ || read_total >= drain_budget) return delivered;
        if (socket_empty) {
            dry_ = true;
            return delivered;
        }
        const long n = fill_reader(false);
        if (n < 0) {
            dry_ = true;
            return delivered;
        }
        if (n == 0) {
            eof_ = dry_ = true;
            continue;  // parse what is left, then return
        }
        dry_ = false;
        socket_empty = reader_.last_fill_short();
        read_total += static_cast<std::size_t>(n);
    }
}

void Link::deliver_from_slot(FrameSink& sink, const FrameView& frame) {
    if (!side_) throw ProtocolError("coproc: shared-memory descriptor on a link without a descriptor channel");
    Bytes payload = slots_in_.resolve(decode_slot_descriptor(frame.payload), side_.get(), reader_.max_frame_size());
    FrameView view = frame;
    view.payload = payload.view();
    view.in_slot = false;
    view.owned = &payload;  // the sink keeps the borrowed payload; if not, the slot is freed here
    sink.on_frame(view);
}

bool Link::readable_now() {
    if (!hello_seen_ && !eof_) {
        // The handshake is no message: take it here, so that it never counts.
        if (!reader_.has_complete()) {
            const long n = fill_reader(false);
            if (n == 0) eof_ = dry_ = true;
            if (n > 0) dry_ = false;
        }
        if (reader_.has_complete())
            if (auto frame = reader_.next()) handle_hello(*frame);
    }
    if (reader_.has_complete() || eof_) return true;
    return wait_readable(fd_.get(), -1, Clock::now()) != ready_none;
}

bool Link::wait(Deadline deadline) {
    if (peer_gone()) return true;
    const bool watching = !watch_fired_ && watch_ != nullptr;
    const int extra = watching ? watch_->liveness_fd() : -1;
    unsigned ready = ready_none;
    for (;;) {
        // With a watch, wake at least once a second to ask it directly: its
        // fd may stay silent (an exit pipe a grandchild still holds open).
        ready = wait_readable(fd_.get(), extra, watching ? at_most(deadline, std::chrono::seconds(1)) : deadline,
                              service_fd());
        if ((ready & ready_service) != 0) {
            watch_->service();
            ready &= ~ready_service;
        }
        if (ready != ready_none) break;
        if (watching && watch_->peer_exited()) {
            ready = ready_extra;
            break;
        }
        if (deadline && Clock::now() >= *deadline) return false;
    }
    // The peer exited: every byte it wrote is in the socket now, so after one
    // more drain to dryness it is gone even if someone else holds its end.
    if ((ready & ready_extra) != 0) {
        watch_fired_ = true;
        dry_ = false;
    }
    return true;
}

std::string Link::peer_label() const {
    const long pid = watch_ != nullptr ? watch_->peer_pid() : 0;
    return pid > 0 ? " (worker pid " + std::to_string(pid) + ")" : std::string();
}

void Link::raise_peer_closed() {
    if (watch_ != nullptr) watch_->raise_peer_closed();
    throw ChannelClosed("coproc: the peer closed the channel");
}

bool Link::await_hello(Deadline deadline) {
    while (!hello_seen_) {
        if (auto frame = reader_.next()) {
            handle_hello(*frame);
            return true;
        }
        if (eof_) return false;
        const long n = fill_reader(false);
        if (n == 0) eof_ = true;
        if (n != -1) continue;
        if (watch_fired_) return false;  // the peer died before saying hello
        if (!wait(deadline)) return false;
    }
    return true;
}

bool Link::nothing_new() const noexcept {
    return arrivals_ && dry_ && hello_seen_ && !eof_ && !watch_fired_ && !reader_.has_complete() &&
           arrivals_.mine->load(std::memory_order_acquire) == 0;
}

long Link::fill_reader(bool blocking) {
    // Lowered before the read (a full barrier): a write that lands after the
    // read began raises it again, so nothing_new() never hides unread bytes.
    if (arrivals_) arrivals_.mine->exchange(0, std::memory_order_acq_rel);
    return blocking ? reader_.fill_blocking(fd_.get()) : reader_.fill(fd_.get());
}

void Link::buffer_incoming() {
    while (!eof_) {
        const long n = fill_reader(false);
        if (n < 0) return;
        if (n == 0) eof_ = dry_ = true;
    }
}

}  // namespace coproc::detail
