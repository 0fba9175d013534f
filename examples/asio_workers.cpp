// Serving workers from a Boost.Asio event loop: the loop waits on each
// worker's messenger fd and on its exit fd, and calls the messenger only
// when there is something to read, so one thread serves many workers next
// to whatever else the loop does (sockets, timers).
#include <utility>  // first: Boost 1.74's Asio uses std::exchange without it under C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <vector>

namespace asio = boost::asio;
using Messenger = coproc::MultiMessenger<long>;

// The worker: squares what it gets until the host closes it.
void square(Messenger& m) {
    for (;;) m.send_reply(m.receive_blocking() * m.receive_blocking());
}

int main() {
    asio::io_context loop;
    // Workers first, then the loop's threads (none here): fork before threads.
    std::vector<std::unique_ptr<coproc::WorkerResource<Messenger>>> workers;
    for (int i = 0; i < 2; ++i) workers.push_back(std::make_unique<coproc::WorkerResource<Messenger>>(square));

    long total = 0;
    int answers = 0;
    // One watcher per worker: on each readable, take what arrived, and wait
    // again while replies are owed.
    struct Watch {
        Messenger* m;
        asio::posix::stream_descriptor fd;  // Asio watches the fd; the messenger owns it
        long* total;
        int* answers;
        void arm() {
            fd.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
                if (ec) return;
                // Readable: receive_available never blocks (it may find only part of a frame).
                for (long r : m->receive_available()) {
                    *total += r;
                    ++*answers;
                }
                if (m->remaining() > 0) arm();
            });
        }
        ~Watch() { (void)fd.release(); }  // hand the fd back: the messenger closes it
    };
    std::vector<std::unique_ptr<Watch>> watches;
    for (auto& w : workers) {
        for (long x = 1; x <= 5; ++x) {
            w->messenger().send_request(x);  // the worker multiplies two of them...
            w->messenger().send_norequest(x);
        }  // ...so each request is x * x
        watches.push_back(std::unique_ptr<Watch>(
            new Watch{&w->messenger(), asio::posix::stream_descriptor(loop, w->messenger().fd()), &total, &answers}));
        watches.back()->arm();
    }
    loop.run();  // returns when no wait is left: every reply arrived
    fmt::print("{} answers, sum of squares {}\n", answers, total);
    // A worker's death is an fd too: close one and wait for its exit fd.
    asio::posix::stream_descriptor exited(loop, workers[0]->exit_fd());
    workers[0]->messenger().send_close_request();
    exited.async_wait(asio::posix::stream_descriptor::wait_read, [&](boost::system::error_code) {
        // Readable: it exited; join reaps it (at once, or within moments on an exit pipe).
        fmt::print("worker 0 exited: {}\n", workers[0]->join(std::chrono::seconds(5)));
    });
    loop.restart();
    loop.run();
    (void)exited.release();
}
