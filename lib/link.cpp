// One end of a messenger's stream: handshake, drain, waits and sends.
#include "coproc/detail/link.hpp"

#include "coproc/error.hpp"

namespace coproc::detail {

namespace {
// A drain stops after this many bytes even if more is readable, so a peer
// that writes faster than we parse cannot keep one call busy forever.
constexpr std::size_t drain_budget = std::size_t{64} << 20;
}  // namespace

Link::Link(UniqueFd fd, std::uint64_t fingerprint, std::size_t max_frame_size)
    : fd_(std::move(fd)), reader_(max_frame_size), fingerprint_(fingerprint) {
    std::string hello;
    append_frame(hello, FrameKind::hello, Channel{}, 0.0, encode_hello(fingerprint), max_frame_size);
    try {
        (void)send(hello, std::nullopt);
    } catch (const ChannelClosed&) {
        // The peer already ran and exited (a worker can be that fast). What it
        // sent is still in our socket; the next send will raise.
    }
}

std::size_t Link::write_until(std::string_view bytes, Deadline deadline) {
    std::size_t off = 0;
    while (off < bytes.size()) {
        std::size_t n = 0;
        switch (send_some(fd_.get(), bytes.data() + off, bytes.size() - off, n)) {
            case SendResult::ok: off += n; break;
            case SendResult::peer_closed: raise_peer_closed();
            case SendResult::would_block: {
                // While we wait for room, take in what the peer writes: a peer
                // blocked sending to us could otherwise never read what we
                // send (each small frame costs ~1 KiB of socket buffer, so a
                // few hundred in flight each way suffice to deadlock).
                const unsigned ready = wait_io(fd_.get(), !eof_, deadline);
                if (ready == io_none) return off;
                if ((ready & io_readable) != 0) buffer_incoming();
                break;
            }
        }
    }
    return off;
}

SendOutcome Link::send(std::string_view frames, Deadline deadline) {
    if (!pending_.empty()) {
        const std::size_t n = write_until(pending_, deadline);
        pending_.erase(0, n);
        if (!pending_.empty()) return SendOutcome::timed_out;
    }
    const std::size_t n = write_until(frames, deadline);
    if (n == frames.size()) return SendOutcome::sent;
    if (n == 0) return SendOutcome::timed_out;
    // Part of a frame is in the stream: it cannot be taken back, so the rest
    // is written before anything else (the next frame stays intact).
    pending_.assign(frames.substr(n));
    return SendOutcome::timed_out_committed;
}

void Link::handle_hello(const FrameView& frame) {
    if (hello_seen_) throw ProtocolError("coproc: unexpected second hello frame");
    if (frame.kind != FrameKind::hello) throw ProtocolError("coproc: the peer did not start with a hello frame");
    check_hello(frame.payload, fingerprint_);
    hello_seen_ = true;
}

void Link::set_watch(PeerWatch* watch) {
    watch_ = watch;
    if (watch_ != nullptr) set_receive_timeout(fd_.get(), std::chrono::seconds(1));
}

void Link::wait_for_data() {
    if (peer_gone() || reader_.has_complete()) return;
    const long n = reader_.fill_blocking(fd_.get());
    if (n > 0) {
        dry_ = false;
        skip_read_ = reader_.last_fill_short();
    } else if (n == 0) {
        eof_ = dry_ = true;
    } else if (watch_ != nullptr && !watch_fired_) {
        // The heartbeat: nothing for a second; has the peer died meanwhile?
        if ((wait_readable(watch_->liveness_fd(), -1, Clock::now()) & ready_fd) != 0) {
            watch_fired_ = true;
            dry_ = false;
        }
    }
}

std::size_t Link::drain(Sink sink, void* context) {
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
                    sink(context, *frame);
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
        const long n = reader_.fill(fd_.get());
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

bool Link::wait(Deadline deadline) {
    if (peer_gone()) return true;
    const int extra = watch_fired_ || watch_ == nullptr ? -1 : watch_->liveness_fd();
    const unsigned ready = wait_readable(fd_.get(), extra, deadline);
    if (ready == ready_none) return false;
    // The peer exited: every byte it wrote is in the socket now, so after one
    // more drain to dryness it is gone even if someone else holds its end.
    if ((ready & ready_extra) != 0) {
        watch_fired_ = true;
        dry_ = false;
    }
    return true;
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
        const long n = reader_.fill(fd_.get());
        if (n == 0) eof_ = true;
        if (n != -1) continue;
        if (watch_fired_) return false;  // the peer died before saying hello
        if (!wait(deadline)) return false;
    }
    return true;
}

void Link::buffer_incoming() {
    while (!eof_) {
        const long n = reader_.fill(fd_.get());
        if (n < 0) return;
        if (n == 0) eof_ = dry_ = true;
    }
}

}  // namespace coproc::detail
