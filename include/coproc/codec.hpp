// coproc/codec.hpp — cereal binary (de)serialization of messages into reused
// buffers, with no stream objects built per message.
//
//   std::string buf;
//   coproc::encode_append(buf, std::vector<int>{1, 2, 3});   // appends bytes
//   auto v = coproc::decode<std::vector<int>>(buf);           // throws ProtocolError on bad bytes
//
// Any type cereal can serialize works (include the cereal/types/*.hpp headers
// for the standard types you use; coproc includes string, vector, variant,
// optional, map, array, utility and tuple for you).
//
// Untrusted input: decode() checks every cereal size prefix against the bytes
// left before cereal allocates, so a 2^60 vector length is a ProtocolError,
// not std::bad_alloc. A container's allocation is thus bounded by
// (bytes left) x sizeof(element). Consequence: a container of more elements
// than it has encoded bytes (only possible with empty element types) cannot be
// decoded. Byte order is the machine's (both ends of a socketpair share it).
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <array>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include "coproc/detail/bytes.hpp"
#include "coproc/error.hpp"

namespace coproc::detail {

/// cereal output archive appending to a std::string owned by the caller
/// (large runs to `gather` instead, if given).
class BufferOutputArchive : public cereal::OutputArchive<BufferOutputArchive, cereal::AllowEmptyClassElision> {
public:
    explicit BufferOutputArchive(std::string& out, Gather* gather = nullptr)
        : cereal::OutputArchive<BufferOutputArchive, cereal::AllowEmptyClassElision>(this),
          out_(out),
          gather_(gather) {}
    void saveBinary(const void* data, std::size_t size) {
        if (size == 0) return;
        if (gather_ != nullptr && size >= Gather::min_run) {
            gather_->runs.push_back({out_.size(), static_cast<const char*>(data), size});
            gather_->bytes += size;
            return;
        }
        out_.append(static_cast<const char*>(data), size);
    }

private:
    std::string& out_;
    Gather* gather_;
};

/// cereal input archive over a byte range; throws ProtocolError when the input
/// runs short or a size prefix exceeds the bytes left.
class BufferInputArchive : public cereal::InputArchive<BufferInputArchive, cereal::AllowEmptyClassElision> {
public:
    explicit BufferInputArchive(std::string_view in)
        : cereal::InputArchive<BufferInputArchive, cereal::AllowEmptyClassElision>(this), in_(in) {}
    void loadBinary(void* data, std::size_t size) {
        if (size > in_.size() - pos_) throw ProtocolError("coproc: truncated message payload");
        if (size == 0) return;  // data may be null (an empty vector's): memcpy must not see it
        std::memcpy(data, in_.data() + pos_, size);
        pos_ += size;
    }
    /// Size prefixes may not promise more elements than there are bytes left.
    void check_size(unsigned long long size) const {
        if (size > in_.size() - pos_) throw ProtocolError("coproc: size prefix exceeds the message payload");
    }
    [[nodiscard]] std::size_t remaining() const noexcept { return in_.size() - pos_; }
    /// The next `size` bytes, consumed without copying.
    [[nodiscard]] std::string_view take(std::size_t size) {
        if (size > in_.size() - pos_) throw ProtocolError("coproc: truncated message payload");
        const auto bytes = in_.substr(pos_, size);
        pos_ += size;
        return bytes;
    }

private:
    std::string_view in_;
    std::size_t pos_ = 0;
};

template <class T>
    requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(BufferOutputArchive& ar, const T& t) {
    ar.saveBinary(std::addressof(t), sizeof(t));
}
template <class T>
    requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, T& t) {
    ar.loadBinary(std::addressof(t), sizeof(t));
}
// A bool is one byte on the wire; any other value than 0 or 1 would be
// undefined behaviour once loaded, so it is bad input.
inline void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, bool& b) {
    unsigned char byte = 0;
    ar.loadBinary(&byte, 1);
    if (byte > 1) throw ProtocolError("coproc: invalid bool in message payload");
    b = byte == 1;
}
template <class Archive, class T>
    requires(std::is_same_v<Archive, BufferInputArchive> || std::is_same_v<Archive, BufferOutputArchive>)
void CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
    ar(t.value);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(BufferOutputArchive& ar, const cereal::SizeTag<T>& t) {
    ar(t.size);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, cereal::SizeTag<T>& t) {
    ar(t.size);
    ar.check_size(static_cast<unsigned long long>(t.size));
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(BufferOutputArchive& ar, const cereal::BinaryData<T>& bd) {
    ar.saveBinary(bd.data, static_cast<std::size_t>(bd.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, cereal::BinaryData<T>& bd) {
    ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

/// Vectors get their own loader on our input archive: cereal's resizes to the
/// promised element count before reading a byte, i.e. allocates
/// count x sizeof(T). Arithmetic elements are checked against the bytes left;
/// other elements are appended as they are decoded, so memory grows only with
/// input actually consumed.
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, std::vector<T, A>& vector) {
    cereal::size_type size = 0;
    ar(cereal::make_size_tag(size));  // checked against the bytes left
    vector.clear();
    if constexpr (sizeof(T) == 1 && std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
        // Straight from the input: no zero-fill of the new storage first.
        const auto bytes = ar.take(static_cast<std::size_t>(size));
        vector.assign(reinterpret_cast<const T*>(bytes.data()),
                      reinterpret_cast<const T*>(bytes.data() + bytes.size()));
    } else if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
        if (size > ar.remaining() / sizeof(T)) throw ProtocolError("coproc: size prefix exceeds the message payload");
        vector.resize(static_cast<std::size_t>(size));
        ar.loadBinary(vector.data(), static_cast<std::size_t>(size) * sizeof(T));
    } else {
        for (cereal::size_type i = 0; i < size; ++i) {
            vector.emplace_back();
            ar(vector.back());
        }
    }
}

/// Byte strings are copied straight from the input (cereal's loader resizes,
/// i.e. zero-fills, first: a second pass over megabyte payloads).
template <class C, class Traits, class A>
    requires(sizeof(C) == 1 && std::is_arithmetic_v<C>)
void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, std::basic_string<C, Traits, A>& str) {
    cereal::size_type size = 0;
    ar(cereal::make_size_tag(size));  // checked against the bytes left
    const auto bytes = ar.take(static_cast<std::size_t>(size));
    str.assign(reinterpret_cast<const C*>(bytes.data()), bytes.size());
}

// More specialized than both cereal's vector<bool> loader and ours above.
template <class A>
void CEREAL_LOAD_FUNCTION_NAME(BufferInputArchive& ar, std::vector<bool, A>& vector) {
    cereal::size_type size = 0;
    ar(cereal::make_size_tag(size));
    vector.clear();
    for (cereal::size_type i = 0; i < size; ++i) {
        bool b = false;
        ar(b);
        vector.push_back(b);
    }
}

}  // namespace coproc::detail

CEREAL_REGISTER_ARCHIVE(coproc::detail::BufferOutputArchive)
CEREAL_REGISTER_ARCHIVE(coproc::detail::BufferInputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(coproc::detail::BufferInputArchive, coproc::detail::BufferOutputArchive)

namespace coproc {
namespace detail {
// Types whose cereal binary encoding is exactly their object bytes: numbers
// (not bool, whose load is checked) and std::arrays of them. They skip cereal
// (archive set-up costs more than the copy) with identical bytes on the wire.
template <class T>
struct raw_encoded : std::bool_constant<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>> {};
template <class T, std::size_t N>
struct raw_encoded<std::array<T, N>> : raw_encoded<T> {};
}  // namespace detail

/// Appends the cereal encoding of `value` to `out`. Throws what the type's
/// serialize function throws.
template <class T>
void encode_append(std::string& out, const T& value) {
    if constexpr (detail::raw_encoded<T>::value) {
        out.append(reinterpret_cast<const char*>(&value), sizeof(T));
    } else {
        detail::BufferOutputArchive ar(out);
        ar(value);
    }
}

namespace detail {
/// encode_append, with large byte runs left in `value` and listed in `gather`.
template <class T>
void encode_gather(std::string& out, Gather& gather, const T& value) {
    if constexpr (raw_encoded<T>::value) {
        out.append(reinterpret_cast<const char*>(&value), sizeof(T));
    } else {
        BufferOutputArchive ar(out, &gather);
        ar(value);
    }
}
}  // namespace detail

namespace detail {
/// decode() into a default-constructed `value` the caller already has (a
/// vector's new last element, say): no temporary, no copy out.
template <class T>
void decode_into(T& value, std::string_view bytes) {
    if constexpr (raw_encoded<T>::value) {
        if (bytes.size() != sizeof(T)) throw ProtocolError("coproc: message payload has the wrong size");
        std::memcpy(&value, bytes.data(), sizeof(T));
    } else {
        BufferInputArchive ar(bytes);
        try {
            ar(value);
        } catch (const cereal::Exception& e) {
            throw ProtocolError(std::string("coproc: cannot decode message: ") + e.what());
        }
        if (ar.remaining() != 0) throw ProtocolError("coproc: trailing bytes after message payload");
    }
}
}  // namespace detail

/// Decodes a `T` from exactly `bytes`. Throws ProtocolError on malformed,
/// truncated or trailing input; never allocates more than the bounds above.
template <class T>
[[nodiscard]] T decode(std::string_view bytes) {
    static_assert(std::is_default_constructible_v<T>, "coproc messages must be default-constructible");
    T value{};
    detail::decode_into(value, bytes);
    return value;
}

}  // namespace coproc
