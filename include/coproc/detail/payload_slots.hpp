// coproc/detail/payload_slots.hpp — the large-payload path: payloads above a threshold
// travel through shared memory instead of the socket. Internal.
//
// Each sending side owns a few "slots": a memfd (sealed against shrinking)
// mapped once and kept. To send, the sender takes a free slot, writes the
// encoded payload into it and sends a small descriptor frame (slot, offset,
// length). A slot's memfd travels once, before the first frame that names
// the slot, with SCM_RIGHTS in a datagram of its own on the link's side
// channel (a SOCK_SEQPACKET pair made with the stream): the stream itself
// never carries descriptors, so it is read with plain recv(). The receiver
// maps the memfd once and keeps it. The receiver queues the
// descriptor (no copy), decodes straight from the mapping when the message is
// popped, then marks the slot free with one atomic store in the slot's
// header, which the sender reads before reusing it. No system call per
// message beyond the descriptor's send, and nothing ever waits for a slot:
// when none is free (the receiver has not popped yet) and the pool is at its
// limit, the payload goes through the socket as usual.
//
// Both classes are owned by one Link and share its (lack of) thread-safety.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "coproc/detail/bytes.hpp"
#include "coproc/detail/unique_fd.hpp"

namespace coproc::detail {

/// Descriptor payload of a frame whose payload lives in a slot: u32 slot id,
/// u32 flags (bit 0: the slot is new to the receiver, its memfd is on the
/// side channel), u64 offset of the payload in the slot's data area, u64
/// length. Little-endian. A side-channel datagram is the u32 slot id with the
/// memfd attached.
inline constexpr std::size_t slot_descriptor_size = 24;
inline constexpr std::uint32_t slot_carries_fd = 1;

/// Bytes at the start of every slot before the data area; the first four are
/// the busy flag (1 while the receiver holds the payload).
inline constexpr std::size_t slot_header_size = 64;

struct SlotDescriptor {
    std::uint32_t slot = 0;
    std::uint32_t flags = 0;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
};
void encode_slot_descriptor(char* out, const SlotDescriptor& d) noexcept;
/// Throws ProtocolError unless `payload` is exactly one descriptor.
[[nodiscard]] SlotDescriptor decode_slot_descriptor(std::string_view payload);

/// The sending side's slots.
class SlotSender {
public:
    struct Slot;
    /// A slot taken for one payload: write `size` bytes at `data`, then send
    /// the descriptor from describe(). If the send is given up before any
    /// byte left, call abandon() so the slot is free again.
    struct Grant {
        Slot* slot = nullptr;
        char* data = nullptr;
        explicit operator bool() const noexcept { return slot != nullptr; }
    };

    /// `limit`: the most bytes of shared memory this side maps in total.
    explicit SlotSender(std::size_t limit) noexcept;
    SlotSender(SlotSender&&) noexcept;
    SlotSender& operator=(SlotSender&&) noexcept;
    ~SlotSender();

    /// A free slot with room for `size` bytes (reused, grown or created), or
    /// an empty grant when every slot is busy and the limit is reached, or
    /// shared memory is unavailable (then the caller uses the socket). Never
    /// blocks on the receiver. Marks the slot busy.
    [[nodiscard]] Grant acquire(std::size_t size) noexcept;
    /// Sends the slot's memfd on the link's side channel `side_fd` unless it
    /// went before (once per slot). False if the channel refused it (full,
    /// closed, out of descriptor space): then abandon() the grant and send
    /// the payload through the socket. Never blocks.
    [[nodiscard]] bool send_memfd(const Grant& grant, int side_fd) noexcept;
    /// The descriptor for a granted payload of `size` bytes.
    [[nodiscard]] SlotDescriptor describe(const Grant& grant, std::size_t size) const noexcept;
    /// The descriptor's frame went out (at least its first byte).
    void sent(const Grant& grant) noexcept;
    /// The descriptor's frame was not sent at all: the slot is free again.
    void abandon(const Grant& grant) noexcept;

    [[nodiscard]] std::size_t mapped_bytes() const noexcept { return mapped_; }

private:
    std::vector<std::unique_ptr<Slot>> slots_;
    std::size_t limit_;
    std::size_t mapped_ = 0;
    bool broken_ = false;  // memfd_create failed once: stop trying
};

/// The receiving side: the peer's slots, mapped on first use.
class SlotReceiver {
public:
    SlotReceiver();
    SlotReceiver(SlotReceiver&&) noexcept;
    SlotReceiver& operator=(SlotReceiver&&) noexcept;
    ~SlotReceiver();

    /// Resolves a descriptor to its payload as a borrowed buffer that frees
    /// the slot when it is destroyed. Reads the slot's memfd from `side_fd`
    /// (never blocks: the sender wrote it before the frame) when the
    /// descriptor announces a new slot. Throws ProtocolError on a descriptor
    /// that does not match what the peer sent (unknown slot, a range outside
    /// it, a missing or unsealed memfd), SystemError if mapping fails.
    [[nodiscard]] Bytes resolve(const SlotDescriptor& descriptor, int side_fd, std::size_t max_length);

private:
    struct Mapping;
    // The memfd of slot `id`, from the side channel. Datagrams for other
    // slots read on the way (their frame was given up, or is still to come)
    // wait in early_.
    UniqueFd take_memfd(std::uint32_t id, int side_fd);
    std::vector<std::unique_ptr<Mapping>> slots_;  // by slot id
    std::vector<UniqueFd> early_;                  // by slot id
};

}  // namespace coproc::detail
