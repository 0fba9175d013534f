// The large-payload path: messages above the threshold travel through
// shared-memory slots. Contents, reuse, growth, the socket fallback when every
// slot is taken, timeouts, fork hygiene, and descriptors a peer gets wrong.
#include <catch2/catch.hpp>

#include <coproc/coproc.hpp>
#include <coproc/detail/endian.hpp>
#include <coproc/detail/frame.hpp>
#include <coproc/detail/payload_slots.hpp>

#include "socket.hpp"  // send_some (lib/, private)

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Channel;
namespace detail = coproc::detail;

namespace {

using coproc::test::pattern;

coproc::MessengerOptions small_threshold(std::size_t limit = std::size_t{64} << 20) {
    coproc::MessengerOptions o;
    o.shared_memory_threshold = 4096;
    o.shared_memory_limit = limit;
    return o;
}

// The memfd slots open in this process, per /proc/self/fd.
int open_slot_fds() {
    int count = 0;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return -1;
    while (const dirent* e = ::readdir(dir)) {
        char target[256] = {};
        const std::string path = std::string("/proc/self/fd/") + e->d_name;
        const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
        if (n > 0 && std::strstr(target, "memfd:coproc-slot") != nullptr) ++count;
    }
    ::closedir(dir);
    return count;
}

}  // namespace

TEST_CASE("large messages arrive intact through shared memory, both ways", "[payload_slots]") {
    auto [worker, host] = coproc::PriorityMessenger<std::string>::new_pair(small_threshold());
    for (const std::size_t size :
         {std::size_t{4096}, std::size_t{100'000}, std::size_t{3} << 20, std::size_t{50'000}}) {
        const std::string a = pattern(size, 1);
        host.send_request(a, Channel{"big"});
        CHECK(worker.receive_blocking(Channel{"big"}, 5s) == a);
        const std::string b = pattern(size, 2);
        worker.send_reply(b, Channel{"big"});
        CHECK(host.receive_blocking(Channel{"big"}, 5s) == b);
    }
    CHECK(host.link().shared_memory_mapped() > 0);
    CHECK(worker.link().shared_memory_mapped() > 0);
    CHECK(host.remaining(Channel{"big"}) == 0);
    // Below the threshold nothing new is mapped.
    const std::size_t mapped = host.link().shared_memory_mapped();
    host.send_norequest(std::string(100, 'x'));
    CHECK(worker.receive_blocking(1s) == std::string(100, 'x'));
    CHECK(host.link().shared_memory_mapped() == mapped);
}

TEST_CASE("a slot is reused once the receiver popped its message", "[payload_slots]") {
    auto [worker, host] = coproc::MultiMessenger<std::vector<char>>::new_pair(small_threshold());
    const std::vector<char> m(1 << 20, 'q');
    host.send_norequest(m);
    CHECK(worker.receive_blocking(5s) == m);
    const std::size_t mapped = host.link().shared_memory_mapped();
    REQUIRE(mapped >= m.size());
    for (int i = 0; i < 50; ++i) {
        host.send_norequest(m);
        CHECK(worker.receive_blocking(5s).size() == m.size());
    }
    CHECK(host.link().shared_memory_mapped() == mapped);
}

TEST_CASE("messages not yet popped keep their slots; past the limit the socket carries the rest", "[payload_slots]") {
    // 2 MiB of slots at most: a 1 MiB message needs a 2 MiB slot (header included, whole MiB).
    auto [worker, host] = coproc::PriorityMessenger<std::string>::new_pair(small_threshold(std::size_t{4} << 20));
    std::vector<std::string> sent;
    for (unsigned i = 0; i < 12; ++i) sent.push_back(pattern((std::size_t{1} << 20) - 100 + i, i));
    // The worker's thread takes everything off the socket (so the socket
    // fallback can make progress) but pops nothing until all have arrived.
    std::size_t queued = 0;
    std::thread reader([&, &w = worker] {
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (queued < sent.size() && std::chrono::steady_clock::now() < deadline) {
            queued = w.available(Channel{7});
            if (queued < sent.size()) {
                try {
                    w.await_available(100ms);
                } catch (const coproc::Timeout&) {
                }
            }
        }
    });
    for (const auto& s : sent) host.send_norequest(s, Channel{7}, 10s);
    reader.join();
    CHECK(host.link().shared_memory_mapped() <= (std::size_t{4} << 20));
    REQUIRE(queued == sent.size());
    for (const auto& s : sent) CHECK(worker.receive_blocking(Channel{7}, 5s) == s);
}

TEST_CASE("slots grow for bigger messages and stay correct for smaller ones", "[payload_slots]") {
    auto [worker, host] = coproc::MultiMessenger<std::string>::new_pair(small_threshold());
    for (const std::size_t size :
         {std::size_t{10'000}, std::size_t{5} << 20, std::size_t{9} << 20, std::size_t{20'000}}) {
        const std::string s = pattern(size, static_cast<unsigned>(size));
        host.send_norequest(s);
        REQUIRE(worker.receive_blocking(5s) == s);
    }
    // One slot was enough: each message was popped before the next was sent.
    CHECK(host.link().shared_memory_mapped() < (std::size_t{16} << 20));
}

TEST_CASE("messages of many large strings gather without copies and keep their order", "[payload_slots]") {
    using Msg = std::vector<std::string>;
    for (const std::size_t threshold : {std::size_t{0}, std::size_t{4096}}) {
        coproc::MessengerOptions o;
        o.shared_memory_threshold = threshold;
        auto [worker, host] = coproc::MultiMessenger<Msg>::new_pair(o);
        Msg m;
        // Under 150 KB in all: the socket alone must hold it (one thread).
        for (unsigned i = 0; i < 12; ++i) m.push_back(pattern(i % 3 == 0 ? 20 : 17'000 + i, i));
        host.send_norequest(m);
        CHECK(worker.receive_blocking(5s) == m);
        CHECK((host.link().shared_memory_mapped() > 0) == (threshold != 0));
    }
}

TEST_CASE("a messenger moved over with shared-memory messages still queued", "[payload_slots]") {
    auto [worker, host] = coproc::MultiMessenger<std::string>::new_pair(small_threshold());
    auto [worker2, host2] = coproc::MultiMessenger<std::string>::new_pair(small_threshold());
    host.send_norequest(pattern(200'000, 1));
    host2.send_norequest(pattern(300'000, 2));
    CHECK(worker.available() == 1);
    CHECK(worker2.available() == 1);
    worker = std::move(worker2);  // worker's queued payload borrows its old link's mapping
    CHECK(worker.receive_blocking(5s) == pattern(300'000, 2));
}

TEST_CASE("a timed large send to a full socket throws Timeout and frees its slot", "[payload_slots]") {
    auto [worker, host] = coproc::MultiMessenger<std::string>::new_pair(small_threshold());
    // Fill the socket with small frames the worker does not read.
    // Small batches: the unsent rest of the last one must fit in the socket
    // once the worker has drained it.
    const std::vector<std::string> filler(8, std::string(2000, 'f'));
    std::size_t batches = 0;
    for (;;) {
        try {
            host.send_norequest_multiple(filler, Channel{}, 50ms);
            ++batches;
        } catch (const coproc::Timeout&) {
            break;
        }
        REQUIRE(batches < 100'000);
    }
    const std::string big = pattern(1 << 20, 9);
    CHECK_THROWS_AS(host.send_norequest(big, Channel{}, 20ms), coproc::Timeout);
    // Drain everything; then the same slot carries the next large message.
    const std::size_t mapped = host.link().shared_memory_mapped();
    while (worker.try_receive()) {
    }
    host.send_norequest(big, Channel{}, 5s);
    std::optional<std::string> got;
    while (!(got = worker.try_receive())) CHECK_NOTHROW(worker.await_available(5s));
    CHECK(*got == big);
    CHECK(host.link().shared_memory_mapped() == mapped);
}

namespace {
void echo_big(coproc::PriorityMessenger<std::string>& m) {
    for (;;) m.send_reply(m.receive_blocking() + "!");
}
// Slot mappings per /proc/self/maps.
int mapped_slots() {
    FILE* f = std::fopen("/proc/self/maps", "r");
    if (f == nullptr) return -1;
    int count = 0;
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr) {
        if (std::strstr(line, "memfd:coproc-slot") != nullptr) ++count;
    }
    std::fclose(f);
    return count;
}

// Exit code: inherited slot fds + slot mappings + recorded DONTFORK ranges
// (all zero: the child closed, never got, and unmapped them).
int count_inherited_slots(coproc::PriorityMessenger<std::string>&) {
    return open_slot_fds() + mapped_slots() + static_cast<int>(detail::dontfork_ranges().size());
}
}  // namespace

TEST_CASE("workers: large round trips, and forked workers do not inherit slots", "[payload_slots]") {
    coproc::WorkerOptions options;
    options.messenger = small_threshold();
    coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(options, echo_big);
    for (unsigned i = 0; i < 5; ++i) {
        const std::string s = pattern((std::size_t{2} << 20) + i, i);
        w.messenger().send_request(s);
        CHECK(w.messenger().receive_blocking(10s) == s + "!");
    }
    REQUIRE(open_slot_fds() >= 2);  // ours and the one the worker sent us
    CHECK(mapped_slots() >= 2);
    CHECK(detail::dontfork_ranges().size() >= 2);  // a child unmaps them for valgrind's sake
    coproc::WorkerResource<coproc::PriorityMessenger<std::string>> second(count_inherited_slots);
    CHECK(second.join(10s) == coproc::ExitStatus::exited_with(0));
    CHECK(w.terminate(10s).signaled());
}

// Not under ASan: g++ 12's ASan allocator takes no lock around fork, so a
// child forked while the other thread allocates can block forever in its
// first malloc (seen: SizeClassAllocator64::GetFromAllocator). glibc's malloc
// is fork-safe, so the normal build runs it (and its exit-pipe variant).
#if !defined(__SANITIZE_ADDRESS__)
TEST_CASE("workers start while another thread maps and unmaps slots: no deadlock, nothing stale", "[payload_slots]") {
    // Fork with another thread running (the README advises against it; the
    // registries must still hold): that thread's registrations wait for each
    // fork instead of racing its snapshot.
    const std::size_t ranges_before = detail::dontfork_ranges().size();
    const std::size_t fds_before = detail::registered_fds().size();
    std::atomic<bool> stop{false};
    std::atomic<int> churned{0};
    std::thread churn([&] {
        while (!stop.load()) {
            auto [a, b] = coproc::MultiMessenger<std::string>::new_pair(small_threshold());
            a.send_norequest(pattern(std::size_t{1} << 20, 3));
            if (b.receive_blocking(5s).size() != std::size_t{1} << 20) return;
            churned.fetch_add(1);
        }
    });
    coproc::WorkerOptions options;
    options.messenger = small_threshold();
    for (unsigned i = 0; i < 20; ++i) {
        coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(options, echo_big);
        const std::string s = pattern(std::size_t{64} << 10, i);
        w.messenger().send_request(s);
        CHECK(w.messenger().receive_blocking(10s) == s + "!");
        CHECK(w.join(10s) == coproc::ExitStatus::exited_with(0));
    }
    stop = true;
    churn.join();
    CHECK(churned.load() > 0);
    CHECK(detail::dontfork_ranges().size() == ranges_before);
    CHECK(detail::registered_fds().size() == fds_before);
}
#endif

TEST_CASE("slot mappings are forgotten when their messengers go: a later child unmaps nothing stale",
          "[payload_slots]") {
    const std::size_t before = detail::dontfork_ranges().size();
    {
        auto [worker, host] = coproc::PriorityMessenger<std::string>::new_pair(small_threshold());
        host.send_request(pattern(std::size_t{1} << 20, 1));
        CHECK(worker.receive_blocking(5s).size() == std::size_t{1} << 20);
        worker.send_reply(pattern(std::size_t{1} << 20, 2));
        CHECK(host.receive_blocking(5s).size() == std::size_t{1} << 20);
        // Each side's sending slot and its mapping of the other's.
        CHECK(detail::dontfork_ranges().size() == before + 4);
    }
    // A stale entry would make the next forked worker munmap whatever the
    // host has mapped at that address since.
    CHECK(detail::dontfork_ranges().size() == before);
}

namespace {
void send_three_then_die(coproc::PriorityMessenger<std::string>& m) {
    for (unsigned i = 0; i < 3; ++i) m.send_norequest(pattern(std::size_t{1} << 20, i));
    ::kill(::getpid(), SIGKILL);
}
}  // namespace

TEST_CASE("large messages a worker sent before it was killed stay receivable; no fd outlives the worker",
          "[payload_slots]") {
    const auto fds_before = coproc::test::open_fds();
    {
        coproc::WorkerResource<coproc::PriorityMessenger<std::string>> w(send_three_then_die);
        for (unsigned i = 0; i < 3; ++i) CHECK(w.messenger().receive_blocking(10s) == pattern(std::size_t{1} << 20, i));
        CHECK_THROWS_AS(w.messenger().receive_blocking(10s), coproc::WorkerDied);
        CHECK(w.exit_status() == coproc::ExitStatus::killed_by(SIGKILL));
    }
    CHECK(coproc::test::open_fds() == fds_before);
    CHECK(open_slot_fds() == 0);
}

// ---------------------------------------------------------------- a peer that gets it wrong

namespace {

using Target = coproc::MultiMessenger<std::string>;

// The raw ends of a link whose other end is a messenger: it says hello
// correctly, then sends whatever a test crafts.
struct RawPeer {
    detail::UniqueFd raw;
    detail::UniqueFd side;
    Target messenger;

    static RawPeer make(bool with_side = true) {
        auto ends = detail::make_link_pair();
        if (!with_side) ends.second.side.reset();
        RawPeer p{std::move(ends.first.stream), std::move(ends.first.side), Target(std::move(ends.second))};
        const auto hello = detail::hello_frame(detail::type_fingerprint<std::string>);
        p.send(std::string(hello.data(), hello.size()), -1);
        return p;
    }

    // `bytes` (and `fd`, if >= 0) in one send on `socket`, through the posix layer.
    static void send_on(int socket, const std::string& bytes, int fd) {
        const iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
        std::size_t sent = 0;
        REQUIRE(detail::send_some(socket, std::span<const iovec>(&iov, 1), sent, fd) == detail::SendResult::ok);
        REQUIRE(sent == bytes.size());
    }
    void send(const std::string& bytes, int fd) const { send_on(raw.get(), bytes, fd); }

    // A side-channel datagram: the slot id with `fd` attached.
    void send_memfd(std::uint32_t slot, int fd) const {
        std::string id(4, '\0');
        detail::put_le<std::uint32_t>(id.data(), slot);
        send_on(side.get(), id, fd);
    }

    // A data frame whose payload is the descriptor `d`.
    static std::string descriptor_frame(const detail::SlotDescriptor& d) {
        std::string frame;
        const std::size_t start = detail::begin_frame(frame, detail::FrameKind::data, Channel{}, 0.0);
        detail::mark_slot_frame(frame, start);
        const std::size_t at = frame.size();
        frame.resize(at + detail::slot_descriptor_size);
        detail::encode_slot_descriptor(frame.data() + at, d);
        detail::finish_frame(frame, start, detail::default_max_frame_size);
        return frame;
    }

    // The descriptor frame, after the memfd's datagram if `fd` >= 0.
    void send_descriptor(const detail::SlotDescriptor& d, int fd) const {
        if (fd >= 0) send_memfd(d.slot, fd);
        send(descriptor_frame(d), -1);
    }
};

// A memfd of `size` bytes holding a valid encoded string at the data area.
detail::UniqueFd make_slot(std::size_t size, bool seal) {
    detail::UniqueFd fd(::memfd_create("coproc-test-slot", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    REQUIRE(fd);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
    if (seal) REQUIRE(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    std::string encoded;
    coproc::encode_append(encoded, std::string("hi"));
    REQUIRE(::pwrite(fd.get(), encoded.data(), encoded.size(), static_cast<off_t>(detail::slot_header_size)) ==
            static_cast<ssize_t>(encoded.size()));
    return fd;
}

}  // namespace

TEST_CASE("a well-formed foreign descriptor is read, then bad ones are ProtocolErrors", "[payload_slots]") {
    std::string encoded;
    coproc::encode_append(encoded, std::string("hi"));
    const auto good = detail::SlotDescriptor{0, detail::slot_carries_fd, 0, encoded.size()};
    {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_descriptor(good, slot.get());
        CHECK(p.messenger.receive_blocking(5s) == "hi");
        // The slot's busy flag is cleared after the pop.
        std::uint32_t flag = 1;
        REQUIRE(::pread(slot.get(), &flag, sizeof flag, 0) == sizeof flag);
        CHECK(flag == 0);
        // Re-announcing a known slot is refused.
        const auto again = make_slot(4096, true);
        p.send_descriptor(good, again.get());
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("no memfd on the side channel") {
        auto p = RawPeer::make();
        p.send_descriptor(good, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("the memfd attached to the stream instead (the kernel drops it)") {
        const auto fds_before = coproc::test::open_fds();
        {
            auto p = RawPeer::make();
            const auto slot = make_slot(4096, true);
            p.send(RawPeer::descriptor_frame(good), slot.get());
            CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
        }
        CHECK(coproc::test::open_fds() == fds_before);
    }
    SECTION("a memfd for another slot only") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_memfd(1, slot.get());
        p.send_descriptor(good, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a memfd that came early for a later slot is kept for it") {
        auto p = RawPeer::make();
        const auto first = make_slot(4096, true);
        const auto second = make_slot(4096, true);
        p.send_memfd(1, second.get());
        p.send_descriptor(good, first.get());
        CHECK(p.messenger.receive_blocking(5s) == "hi");
        p.send_descriptor({1, detail::slot_carries_fd, 0, encoded.size()}, -1);
        CHECK(p.messenger.receive_blocking(5s) == "hi");
    }
    SECTION("a side-channel datagram of the wrong size") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        RawPeer::send_on(p.side.get(), std::string(7, '\0'), slot.get());
        p.send_descriptor(good, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a side-channel datagram without a memfd") {
        auto p = RawPeer::make();
        p.send_memfd(0, -1);
        p.send_descriptor(good, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a descriptor to a messenger built without a side channel") {
        auto p = RawPeer::make(false);
        p.send_descriptor(good, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("an unknown slot") {
        auto p = RawPeer::make();
        p.send_descriptor({3, 0, 0, encoded.size()}, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a slot id out of range") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_descriptor({1'000'000, detail::slot_carries_fd, 0, encoded.size()}, slot.get());
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("an unsealed memfd (could shrink under the reader)") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, false);
        p.send_descriptor(good, slot.get());
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("not a memfd at all") {
        auto p = RawPeer::make();
        int pipe_fds[2];
        REQUIRE(::pipe(pipe_fds) == 0);
        p.send_descriptor(good, pipe_fds[0]);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a range past the end of the slot") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_descriptor({0, detail::slot_carries_fd, 4000, 1000}, slot.get());
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("an offset that would overflow") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_descriptor({0, detail::slot_carries_fd, ~std::uint64_t{0} - 8, 16}, slot.get());
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a length over the maximum frame size") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_descriptor({0, detail::slot_carries_fd, 0, std::uint64_t{1} << 40}, slot.get());
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("unknown descriptor flags") {
        auto p = RawPeer::make();
        p.send_descriptor({0, 6, 0, 2}, -1);
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
    SECTION("a payload in the slot that does not decode") {
        auto p = RawPeer::make();
        const auto slot = make_slot(4096, true);
        p.send_descriptor({0, detail::slot_carries_fd, 0, 3}, slot.get());  // "hi" is 10 bytes encoded
        CHECK_THROWS_AS(p.messenger.receive_blocking(5s), coproc::ProtocolError);
    }
}

TEST_CASE("a peer whose side channel is closed gets large payloads through the socket", "[payload_slots]") {
    auto ends = detail::make_link_pair();
    ends.second.side.reset();  // the receiver dropped its side end: the sender's datagram fails (EPIPE)
    Target sender(std::move(ends.first), small_threshold());
    Target receiver(std::move(ends.second), small_threshold());
    const std::string big = pattern(100 * 1024, 3);
    sender.send_norequest(big);
    CHECK(receiver.receive_blocking(5s) == big);
    sender.send_norequest(big);  // the slot is still unknown to the peer: the socket again
    CHECK(receiver.receive_blocking(5s) == big);
}
