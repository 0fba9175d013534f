// coproc/blob.hpp — a message that is just bytes, received without a copy.
//
//   using M = coproc::PriorityMessenger<coproc::Blob>;
//   m.send_norequest(coproc::Blob::copy_of(image));  // one copy, into shared memory
//   coproc::Blob b = m.receive_blocking();           // no copy: a view of it
//   process(b.data(), b.size());
//
// A messenger of Blob hands out received payloads where they already are: in
// the sender's shared-memory slot (payloads of at least
// MessengerOptions::shared_memory_threshold bytes), or in the buffer the
// socket was read into. A std::string or std::vector message is copied out
// once more when it is decoded; a Blob is not, which for big payloads halves
// the memory traffic.
//
// The price: a Blob received through shared memory keeps its slot busy until
// it is destroyed. Keep a few at a time, not thousands: when every slot is
// busy and the sender's pool is at shared_memory_limit, its next payloads go
// through the socket (slower, never blocked or lost). Copy what you keep for
// long (clone()).
//
// On the wire a Blob is encoded as a std::string of the same bytes (cereal
// size tag + bytes), and it may be a member of other messages (then it is
// decoded with a copy, like a string). Move-only; not thread-safe, like a
// std::string.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <utility>

#include <cereal/cereal.hpp>

#include "coproc/detail/bytes.hpp"
#include "coproc/error.hpp"

namespace coproc {

class Blob;
namespace detail {
/// Takes over a queued payload that holds one encoded Blob. Throws ProtocolError
/// if the payload is not exactly that.
[[nodiscard]] Blob adopt_blob(Bytes&& bytes, std::size_t offset);
}  // namespace detail

class Blob {
public:
    Blob() noexcept = default;
    /// `size` bytes to be written by the caller (contents unspecified).
    [[nodiscard]] static Blob uninitialized(std::size_t size) { return Blob(detail::Bytes::uninitialized(size), 0); }
    /// A copy of `size` bytes at `data`.
    [[nodiscard]] static Blob copy_of(const void* data, std::size_t size) {
        Blob b = uninitialized(size);
        if (size != 0) std::memcpy(b.data(), data, size);
        return b;
    }
    [[nodiscard]] static Blob copy_of(std::string_view bytes) { return copy_of(bytes.data(), bytes.size()); }
    [[nodiscard]] static Blob copy_of(std::span<const std::byte> bytes) { return copy_of(bytes.data(), bytes.size()); }

    Blob(Blob&&) noexcept = default;
    Blob& operator=(Blob&&) noexcept = default;
    Blob(const Blob&) = delete;
    Blob& operator=(const Blob&) = delete;
    /// Frees the shared-memory slot it borrowed, if any.
    ~Blob() = default;

    /// An owned copy (frees nothing, borrows nothing).
    [[nodiscard]] Blob clone() const { return copy_of(view()); }

    [[nodiscard]] std::byte* data() noexcept { return reinterpret_cast<std::byte*>(bytes_.data() + offset_); }
    [[nodiscard]] const std::byte* data() const noexcept {
        return reinterpret_cast<const std::byte*>(bytes_.data() + offset_);
    }
    [[nodiscard]] std::size_t size() const noexcept { return bytes_.size() - offset_; }
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }
    [[nodiscard]] std::string_view view() const noexcept { return bytes_.view().substr(offset_); }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data(), size()}; }
    /// True while it borrows the sender's shared-memory slot.
    [[nodiscard]] bool in_shared_memory() const noexcept { return bytes_.is_borrowed(); }

    friend bool operator==(const Blob& a, const Blob& b) noexcept { return a.view() == b.view(); }

private:
    Blob(detail::Bytes bytes, std::size_t offset) noexcept : bytes_(std::move(bytes)), offset_(offset) {}
    friend Blob detail::adopt_blob(detail::Bytes&& bytes, std::size_t offset);

    detail::Bytes bytes_;
    std::size_t offset_ = 0;  // where the blob's bytes start in bytes_
};

namespace detail {
inline Blob adopt_blob(Bytes&& bytes, std::size_t offset) {
    const std::string_view payload = bytes.view().substr(offset);
    std::uint64_t size = 0;
    if (payload.size() < sizeof size) throw ProtocolError("coproc: cannot decode message: a blob without its size");
    std::memcpy(&size, payload.data(), sizeof size);  // cereal's size tag, machine order
    if (size != payload.size() - sizeof size)
        throw ProtocolError("coproc: cannot decode message: a blob's size does not match its bytes");
    return Blob(std::move(bytes), offset + sizeof size);
}
}  // namespace detail

// cereal: the same encoding as a std::string of the bytes.
template <class Archive>
void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const Blob& blob) {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(blob.size())));
    ar(cereal::binary_data(blob.data(), blob.size()));
}
template <class Archive>
void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, Blob& blob) {
    cereal::size_type size = 0;
    ar(cereal::make_size_tag(size));  // checked against the bytes left by coproc's archive
    blob = Blob::uninitialized(static_cast<std::size_t>(size));
    ar(cereal::binary_data(blob.data(), blob.size()));
}

}  // namespace coproc
