// The large-payload path: memfd slots a sender fills and a receiver reads in
// place (see coproc/detail/payload_slots.hpp for the protocol).
#include "coproc/detail/payload_slots.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "coproc/detail/endian.hpp"
#include "coproc/error.hpp"
#include "coproc/detail/fork_registry.hpp"
#include "socket.hpp"

namespace coproc::detail {
namespace {

constexpr std::size_t max_slots = 8;
constexpr std::size_t slot_granule = std::size_t{1} << 20;  // capacities are whole MiB

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::uint32_t& busy_flag(char* map) noexcept {
    // The first four bytes of the header; mmap's page alignment makes the
    // atomic_ref's alignment requirement hold.
    return *reinterpret_cast<std::uint32_t*>(map);
}

}  // namespace

void encode_slot_descriptor(char* out, const SlotDescriptor& d) noexcept {
    put_le(out, d.slot);
    put_le(out + 4, d.flags);
    put_le(out + 8, d.offset);
    put_le(out + 16, d.length);
}

SlotDescriptor decode_slot_descriptor(std::string_view payload) {
    if (payload.size() != slot_descriptor_size) throw ProtocolError("coproc: malformed shared-memory descriptor");
    SlotDescriptor d;
    d.slot = get_le<std::uint32_t>(payload.data());
    d.flags = get_le<std::uint32_t>(payload.data() + 4);
    d.offset = get_le<std::uint64_t>(payload.data() + 8);
    d.length = get_le<std::uint64_t>(payload.data() + 16);
    if ((d.flags & ~slot_carries_fd) != 0) throw ProtocolError("coproc: unknown shared-memory descriptor flags");
    return d;
}

// ---------------------------------------------------------------- sender

struct SlotSender::Slot {
    UniqueFd fd;
    FdRegistration registration;  // forked workers close it
    char* map = nullptr;
    std::size_t mapped = 0;
    std::uint32_t id = 0;
    bool memfd_sent = false;  // its datagram is on the side channel
    bool announced = false;   // a frame naming it went out: the receiver has the memfd

    [[nodiscard]] bool busy() const noexcept {
        return std::atomic_ref<std::uint32_t>(busy_flag(map)).load(std::memory_order_acquire) != 0;
    }
    void unmap() noexcept {
        if (map != nullptr) unmap_shared_dontfork(map, mapped);
        map = nullptr;
        mapped = 0;
    }
    // Grows the memfd (never shrinks: it is sealed) and maps it anew.
    bool resize(std::size_t size) noexcept {
        if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return false;
        unmap();
        map = map_shared_dontfork(fd.get(), size);
        if (map == nullptr) return false;
        mapped = size;
        return true;
    }
    ~Slot() { unmap(); }
};

SlotSender::SlotSender(std::size_t limit) noexcept : limit_(limit) {}
SlotSender::~SlotSender() = default;
SlotSender::SlotSender(SlotSender&&) noexcept = default;
SlotSender& SlotSender::operator=(SlotSender&&) noexcept = default;

SlotSender::Grant SlotSender::acquire(std::size_t size) noexcept {
    if (broken_) return {};
    const std::size_t need = slot_header_size + size;
    Slot* best = nullptr;       // the smallest free slot that fits
    Slot* too_small = nullptr;  // else the largest free slot, to grow
    for (auto& s : slots_) {
        if (s->map == nullptr || s->busy()) continue;
        if (s->mapped >= need) {
            if (best == nullptr || s->mapped < best->mapped) best = s.get();
        } else if (too_small == nullptr || s->mapped > too_small->mapped) {
            too_small = s.get();
        }
    }
    if (best == nullptr) {
        if (too_small != nullptr) {
            const std::size_t grown = round_up(std::max(need, too_small->mapped + too_small->mapped / 2), slot_granule);
            if (mapped_ - too_small->mapped + grown <= limit_) {
                mapped_ -= too_small->mapped;
                const bool ok = too_small->resize(grown);
                mapped_ += too_small->mapped;
                if (ok) best = too_small;
            }
        }
        if (best == nullptr && slots_.size() < max_slots) {
            const std::size_t capacity = round_up(std::max(need, slot_granule), slot_granule);
            if (mapped_ + capacity > limit_) return {};
            const int fd = ::memfd_create("coproc-slot", MFD_CLOEXEC | MFD_ALLOW_SEALING);
            if (fd < 0) {
                broken_ = true;  // no memfd here (old kernel, seccomp): the socket it is
                return {};
            }
            auto slot = std::make_unique<Slot>();
            slot->fd.reset(fd);
            slot->id = static_cast<std::uint32_t>(slots_.size());
            // The receiver maps what the memfd holds; a shrinking memfd would
            // make its reads fault (SIGBUS), so shrinking is sealed off.
            if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0 || !slot->resize(capacity)) {
                broken_ = true;
                return {};
            }
            slot->registration = FdRegistration(fd);
            mapped_ += slot->mapped;
            best = slot.get();
            slots_.push_back(std::move(slot));
        }
    }
    if (best == nullptr) return {};
    std::atomic_ref<std::uint32_t>(busy_flag(best->map)).store(1, std::memory_order_relaxed);
    return Grant{best, best->map + slot_header_size};
}

bool SlotSender::send_memfd(const Grant& grant, int side_fd) noexcept {
    Slot& slot = *grant.slot;
    if (slot.memfd_sent) return true;
    // The datagram: the slot id, with the memfd attached.
    char id[4];
    put_le<std::uint32_t>(id, slot.id);
    const iovec one{id, sizeof id};
    std::size_t n = 0;
    try {
        slot.memfd_sent =
            send_some(side_fd, std::span<const iovec>(&one, 1), n, slot.fd.get()) == SendResult::ok && n == sizeof id;
    } catch (const SystemError&) {
        // ETOOMANYREFS, ENOBUFS...: not sent
    }
    return slot.memfd_sent;
}

SlotDescriptor SlotSender::describe(const Grant& grant, std::size_t size) const noexcept {
    SlotDescriptor d;
    d.slot = grant.slot->id;
    d.offset = 0;
    d.length = size;
    // Until a frame naming the slot went out, each one says so: the first
    // that arrives makes the receiver take the memfd from the side channel.
    if (!grant.slot->announced) d.flags = slot_carries_fd;
    return d;
}

void SlotSender::sent(const Grant& grant) noexcept { grant.slot->announced = true; }

void SlotSender::abandon(const Grant& grant) noexcept {
    std::atomic_ref<std::uint32_t>(busy_flag(grant.slot->map)).store(0, std::memory_order_relaxed);
}

// ---------------------------------------------------------------- receiver

struct SlotReceiver::Mapping {
    UniqueFd fd;
    FdRegistration registration;
    char* map = nullptr;
    std::size_t mapped = 0;
    // Mappings replaced by a larger one. Payloads borrowed from them may
    // still be queued, so they stay mapped until the receiver goes; they
    // share the memfd's pages with the new mapping (address space only).
    std::vector<std::pair<char*, std::size_t>> retired;
    ~Mapping() {
        if (map != nullptr) unmap_shared_dontfork(map, mapped);
        for (const auto& [p, n] : retired) unmap_shared_dontfork(p, n);
    }
};

SlotReceiver::SlotReceiver() = default;
SlotReceiver::~SlotReceiver() = default;
SlotReceiver::SlotReceiver(SlotReceiver&&) noexcept = default;
SlotReceiver& SlotReceiver::operator=(SlotReceiver&&) noexcept = default;

UniqueFd SlotReceiver::take_memfd(std::uint32_t id, int side_fd) {
    if (early_.size() < max_slots) early_.resize(max_slots);
    while (!early_[id]) {
        char datagram[8];
        FdInbox fds;
        const long n = recv_some(side_fd, datagram, sizeof datagram, &fds);
        if (n <= 0) throw ProtocolError("coproc: shared-memory descriptor without its file descriptor");
        if (n != 4 || fds.size() != 1) throw ProtocolError("coproc: malformed datagram on the descriptor channel");
        const auto named = get_le<std::uint32_t>(datagram);
        if (named >= max_slots || early_[named])
            throw ProtocolError("coproc: malformed datagram on the descriptor channel");
        early_[named] = std::move(fds.front());
    }
    return std::move(early_[id]);
}

Bytes SlotReceiver::resolve(const SlotDescriptor& d, int side_fd, std::size_t max_length) {
    if (d.length > max_length)
        throw ProtocolError("coproc: shared-memory payload of " + std::to_string(d.length) +
                            " bytes exceeds the maximum frame size of " + std::to_string(max_length));
    if (d.slot >= max_slots) throw ProtocolError("coproc: shared-memory slot id out of range");
    if (slots_.size() <= d.slot) slots_.resize(d.slot + 1);
    auto& slot = slots_[d.slot];
    // The sender flags frames naming a new slot until one of them went out,
    // so exactly one flagged frame arrives per slot.
    if ((d.flags & slot_carries_fd) != 0) {
        if (slot) throw ProtocolError("coproc: shared-memory slot announced twice");
        auto mapping = std::make_unique<Mapping>();
        mapping->fd = take_memfd(d.slot, side_fd);
        // Only a memfd sealed against shrinking is safe to read: otherwise
        // the peer could truncate it under us and our reads would fault.
        const int seals = ::fcntl(mapping->fd.get(), F_GET_SEALS);
        if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
            throw ProtocolError("coproc: shared-memory slot is not a memfd sealed against shrinking");
        mapping->registration = FdRegistration(mapping->fd.get());
        slot = std::move(mapping);
    }
    if (!slot) throw ProtocolError("coproc: shared-memory descriptor names an unknown slot");
    const std::uint64_t end = slot_header_size + d.offset + d.length;
    if (d.offset > max_length || end > slot->mapped) {
        // The sender grows slots in place: map again at the memfd's new size.
        struct stat st {};
        if (::fstat(slot->fd.get(), &st) != 0) throw_system_error(errno, "fstat");
        const auto size = static_cast<std::uint64_t>(st.st_size);
        if (d.offset > max_length || end > size)
            throw ProtocolError("coproc: shared-memory descriptor exceeds its slot");
        char* map = map_shared_dontfork(slot->fd.get(), static_cast<std::size_t>(size));
        if (map == nullptr) throw_system_error(errno, "mmap");
        if (slot->map != nullptr) slot->retired.emplace_back(slot->map, slot->mapped);
        slot->map = map;
        slot->mapped = static_cast<std::size_t>(size);
    }
    return Bytes::borrowed(slot->map + slot_header_size + d.offset, static_cast<std::size_t>(d.length),
                           &busy_flag(slot->map));
}

}  // namespace coproc::detail
