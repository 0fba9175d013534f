// Large messages: anything of 64 KiB or more (MessengerOptions::
// shared_memory_threshold) travels through a shared-memory slot instead of the
// socket. Nothing changes in the code you write: send a big vector, receive
// it. Here a worker gets 16 MiB images and answers with their brightness.
// A vector is copied out of the slot when it is decoded; a coproc::Blob
// message is not: the worker reads the pixels where the host wrote them.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

using namespace std::chrono_literals;
using Image = std::vector<std::uint8_t>;  // one byte per pixel
using Messenger = coproc::PriorityMessenger<Image>;

void brightness(Messenger& m) {
    for (;;) {
        const Image image = m.receive_blocking();  // decoded straight from the slot
        const std::uint64_t sum = std::accumulate(image.begin(), image.end(), std::uint64_t{0});
        m.send_reply(Image{static_cast<std::uint8_t>(sum / image.size())});  // small: through the socket
    }
}

// The same worker with Blob messages: no copy on the receiving side.
using BlobMessenger = coproc::PriorityMessenger<coproc::Blob>;

void brightness_in_place(BlobMessenger& m) {
    for (;;) {
        const coproc::Blob image = m.receive_blocking();  // a view of the host's slot
        std::uint64_t sum = 0;
        for (const std::byte b : image.bytes()) sum += std::to_integer<std::uint64_t>(b);
        const auto level = static_cast<char>(sum / image.size());
        m.send_reply(coproc::Blob::copy_of(&level, 1));
    }  // `image` dies here and hands the slot back to the host
}

int main() {
    coproc::WorkerResource<Messenger> w(brightness);
    auto& m = w.messenger();

    const std::size_t pixels = 4096 * 4096;  // 16 MiB
    for (const std::uint8_t level : {std::uint8_t{10}, std::uint8_t{128}, std::uint8_t{250}}) {
        const Image image(pixels, level);
        m.send_request(image);  // one copy into the slot; a small descriptor on the socket
        const Image reply = m.receive_blocking(10s);
        fmt::print("image of {} MiB at level {}: brightness {}\n", image.size() >> 20, level, reply.at(0));
    }
    // One slot served all three: the worker popped each image before the next.
    fmt::print("shared memory mapped by the host for its sends: {} MiB\n", m.link().shared_memory_mapped() >> 20);
    fmt::print("worker exit: {}\n", w.join(5s));

    coproc::WorkerResource<BlobMessenger> in_place(brightness_in_place);
    coproc::Blob image = coproc::Blob::uninitialized(pixels);
    std::memset(image.data(), 77, image.size());  // fill it in place
    in_place.messenger().send_request(image);
    const coproc::Blob reply = in_place.messenger().receive_blocking(10s);
    fmt::print("blob image of {} MiB at level 77: brightness {}\n", image.size() >> 20,
               std::to_integer<int>(reply.bytes()[0]));
    fmt::print("worker exit: {}\n", in_place.join(30s));
}
