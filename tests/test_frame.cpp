// Frames: header encode/decode, many frames per read, and bad input.
#include <catch2/catch.hpp>

#include "socket.hpp"
#include <coproc/detail/frame.hpp>
#include <coproc/error.hpp>

#include <sys/socket.h>

#include <bit>
#include <cstring>
#include <limits>
#include <string>

using namespace coproc::detail;
using coproc::Channel;

namespace {
std::string frame(FrameKind kind, const Channel& ch, double priority, std::string_view payload) {
    std::string out;
    append_frame(out, kind, ch, priority, payload, default_max_frame_size);
    return out;
}
// Overwrites the 8-byte little-endian field at `offset` of a header.
void poke64(std::string& s, std::size_t offset, std::uint64_t v) {
    for (std::size_t i = 0; i < 8; ++i) s[offset + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
}  // namespace

TEST_CASE("frames round-trip with every kind of channel and priority", "[frame]") {
    FrameReader r;
    std::string bytes = frame(FrameKind::request, Channel{}, 1.5, "abc");
    bytes += frame(FrameKind::reply, Channel{-7}, -std::numeric_limits<double>::infinity(), "");
    bytes += frame(FrameKind::data, Channel{"jobs/with space"}, 0.0, std::string(1000, 'x'));
    r.feed(bytes);  // three frames, one "read"
    auto a = r.next();
    REQUIRE(a);
    CHECK(a->kind == FrameKind::request);
    CHECK(a->channel == Channel{});
    CHECK(a->priority == 1.5);
    CHECK(a->payload == "abc");
    auto b = r.next();
    REQUIRE(b);
    CHECK(b->channel == Channel{-7});
    CHECK(b->payload.empty());
    auto c = r.next();
    REQUIRE(c);
    CHECK(c->channel == Channel{"jobs/with space"});
    CHECK(c->payload == std::string(1000, 'x'));
    CHECK_FALSE(r.next());
    CHECK(r.buffered() == 0);
}

TEST_CASE("a truncated frame waits for the rest", "[frame]") {
    const std::string bytes = frame(FrameKind::data, Channel{3}, 2.0, "hello world");
    FrameReader r;
    for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
        r.feed(bytes.substr(i, 1));
        CHECK_FALSE(r.next());
    }
    r.feed(bytes.substr(bytes.size() - 1));
    auto f = r.next();
    REQUIRE(f);
    CHECK(f->payload == "hello world");
}

TEST_CASE("a NaN priority is sent as no priority (+inf)", "[frame]") {
    FrameReader r;
    r.feed(frame(FrameKind::data, Channel{}, std::numeric_limits<double>::quiet_NaN(), "x"));
    CHECK(r.next()->priority == std::numeric_limits<double>::infinity());
}

TEST_CASE("oversized lengths are a ProtocolError before any allocation", "[frame]") {
    std::string bytes = frame(FrameKind::data, Channel{}, 0.0, "x");
    SECTION("2^60 payload length") { poke64(bytes, 24, std::uint64_t{1} << 60); }
    SECTION("maximum payload length") { poke64(bytes, 24, std::numeric_limits<std::uint64_t>::max()); }
    SECTION("just over a small maximum") {
        FrameReader small(16);
        small.feed(frame(FrameKind::data, Channel{}, 0.0, std::string(17, 'y')));
        CHECK_THROWS_AS(small.next(), coproc::ProtocolError);
        return;
    }
    FrameReader r;
    r.feed(bytes.substr(0, frame_header_size));
    CHECK_THROWS_AS(r.next(), coproc::ProtocolError);
}

TEST_CASE("garbage headers are a ProtocolError", "[frame]") {
    std::string bytes = frame(FrameKind::data, Channel{5}, 0.0, "x");
    SECTION("bad magic") { bytes[0] = 'G'; }
    SECTION("unknown kind") { bytes[1] = 42; }
    SECTION("unknown channel kind") { bytes[2] = 9; }
    SECTION("unknown flag bits") { bytes[3] = 2; }
    SECTION("shared-memory flag on a control frame") {
        bytes[1] = static_cast<char>(FrameKind::close);
        bytes[3] = 1;
    }
    SECTION("integer with a name length") { bytes[4] = 1; }
    SECTION("NaN priority") {
        poke64(bytes, 16, std::bit_cast<std::uint64_t>(std::numeric_limits<double>::quiet_NaN()));
    }
    FrameReader r;
    r.feed(bytes);
    CHECK_THROWS_AS(r.next(), coproc::ProtocolError);
}

TEST_CASE("sending a message larger than the maximum frame is refused", "[frame]") {
    std::string out;
    CHECK_THROWS_AS(append_frame(out, FrameKind::data, Channel{}, 0.0, std::string(100, 'x'), 64),
                    coproc::ProtocolError);
    CHECK(out.empty());  // nothing half-built is left behind
}

TEST_CASE("hello and error payloads check their contents", "[frame]") {
    // The hello frame is built without a std::string; it must read back as
    // the same frame append_frame would have made.
    const HelloFrame hello = hello_frame(77);
    FrameReader r;
    r.feed(std::string_view(hello.data(), hello.size()));
    const auto f = r.next();
    REQUIRE(f);
    CHECK(f->kind == FrameKind::hello);
    CHECK(f->channel == Channel{});
    CHECK(f->priority == 0.0);
    CHECK(f->payload.size() == hello_payload_size);
    check_hello(f->payload, 77);
    CHECK_THROWS_AS(check_hello(f->payload, 78), coproc::ProtocolError);
    CHECK_FALSE(r.next());  // nothing after it: the length field is exact
    CHECK_THROWS_AS(check_hello("short", 77), coproc::ProtocolError);
    CHECK_THROWS_AS(throw_error_payload(encode_error("std::range_error", "r")), std::range_error);
    CHECK_THROWS_AS(throw_error_payload(encode_error("x", "y").substr(0, 6)), coproc::ProtocolError);
    CHECK_THROWS_AS(throw_error_payload(encode_error("x", "y") + "z"), coproc::ProtocolError);
}

TEST_CASE("reading on after a large frame is complete keeps the bytes behind it in order", "[frame]") {
    // A peer blocked sending to us makes the link read while its own send
    // waits: the reader must take bytes after a complete large frame
    // without reporting end of stream.
    auto sockets = make_socketpair();
    const std::string large(direct_read_threshold + 1000, 'L');
    const std::string bytes =
        frame(FrameKind::data, Channel{1}, 0.0, large) + frame(FrameKind::data, Channel{2}, 0.0, "small");
    std::size_t off = 0;
    FrameReader r;
    std::optional<FrameView> first;
    // Write in pieces and read after each, as a socket would deliver them.
    while (off < bytes.size()) {
        const std::size_t n = std::min<std::size_t>(64 * 1024, bytes.size() - off);
        REQUIRE(::send(sockets.first.get(), bytes.data() + off, n, 0) == static_cast<ssize_t>(n));
        off += n;
        while (r.fill(sockets.second.get()) > 0) {
        }
        if (!first) first = r.next();  // not complete until the last piece
    }
    CHECK(r.fill(sockets.second.get()) == -1);  // nothing more, and not end of stream
    if (!first) first = r.next();
    REQUIRE(first);
    CHECK(first->channel == Channel{1});
    CHECK(first->payload == large);
    const auto second = r.next();
    REQUIRE(second);
    CHECK(second->channel == Channel{2});
    CHECK(second->payload == "small");
}

TEST_CASE("a reader starts with a small buffer and grows once a read fills it", "[frame]") {
    // A fresh worker writes as few heap pages as it can (each is a fault
    // after fork); a stream must still be read in large chunks after that.
    auto sockets = make_socketpair();
    std::string bytes;
    for (int i = 0; i < 1000; ++i) bytes += frame(FrameKind::data, Channel{i}, 0.0, "payload of a small frame");
    REQUIRE(bytes.size() > 3 * 4096);
    REQUIRE(::send(sockets.first.get(), bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
    FrameReader r;
    const long first = r.fill(sockets.second.get());
    CHECK(first > 0);
    CHECK(first <= 1024);              // the small first buffer
    CHECK_FALSE(r.last_fill_short());  // it filled the buffer: more is waiting
    int next = 0;
    while (auto f = r.next()) CHECK(f->channel == Channel{next++});
    const long second = r.fill(sockets.second.get());
    CHECK(second > 4096);  // grown
    while (auto f = r.next()) CHECK(f->channel == Channel{next++});
    while (r.fill(sockets.second.get()) > 0) {
        while (auto f = r.next()) CHECK(f->channel == Channel{next++});
    }
    CHECK(next == 1000);  // every frame, in order
}
