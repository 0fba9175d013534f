// Fault injection: workers die by SIGKILL, SIGSEGV, abort() and _exit() at
// random points of request/reply and streaming traffic, on both messenger
// kinds. Every host call has a 1 s deadline (a Timeout is a hang); every frame
// the worker wrote before dying must be received; after each cycle there is
// no zombie and the host's fds are those it had before.
//
// Seeded and repeatable: COPROC_FAULT_SEED=N replays a run, COPROC_FAULT_CYCLES=N
// sets the number of cycles (default 500; scripts/test --fault-cycles N).
#include <catch2/catch.hpp>

#include <coproc/worker_resource.hpp>

#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "support.hpp"

using namespace std::chrono_literals;
using coproc::Channel;
using coproc::ExitStatus;

namespace {

enum class Fault { sigkill, sigsegv, abort, exit };
enum class Traffic { request_reply, worker_streams, worker_batches, host_streams };
constexpr std::array faults{Fault::sigkill, Fault::sigsegv, Fault::abort, Fault::exit};
constexpr std::array traffics{Traffic::request_reply, Traffic::worker_streams, Traffic::worker_batches,
                              Traffic::host_streams};
constexpr auto deadline = 1s;

struct Plan {
    Fault fault;
    Traffic traffic;
    int at;         // the worker dies after this many messages
    int exit_code;  // for Fault::exit
};

ExitStatus expected_status(const Plan& p) {
    switch (p.fault) {
        case Fault::sigkill: return ExitStatus::killed_by(SIGKILL);
        case Fault::sigsegv: return ExitStatus::killed_by(SIGSEGV);
        case Fault::abort: return ExitStatus::killed_by(SIGABRT);
        case Fault::exit: return ExitStatus::exited_with(p.exit_code);
    }
    return ExitStatus::exited_with(0);
}

[[noreturn]] void die(const Plan& p) {
    switch (p.fault) {
        case Fault::sigkill: ::kill(::getpid(), SIGKILL); break;
        case Fault::sigsegv: ::raise(SIGSEGV); break;
        case Fault::abort: std::abort();
        case Fault::exit: ::_exit(p.exit_code);
    }
    ::_exit(99);  // not reached
}

template <class Messenger>
void worker(Messenger& m, Plan p) {
    coproc::test::child_watchdog(20);
    switch (p.traffic) {
        case Traffic::request_reply:
            for (int i = 0; i < p.at; ++i) m.send_reply(m.receive_blocking() + 1);
            (void)m.receive_blocking();  // dies holding a request
            break;
        case Traffic::worker_streams:
            for (int i = 0; i < p.at; ++i) m.send_norequest(i, i % 2 == 0 ? Channel{} : Channel{"odd"});
            break;
        case Traffic::worker_batches: {
            std::vector<int> batch;
            for (int i = 0; i < p.at; ++i) batch.push_back(i);
            m.send_norequest_multiple(batch);
            break;
        }
        case Traffic::host_streams:
            for (int i = 0; i < p.at; ++i) (void)m.receive_blocking();
            break;
    }
    die(p);
}

struct Tally {
    int cycles = 0;
    int hangs = 0;
    int wrong_status = 0;
    int lost_frames = 0;
    int fd_leaks = 0;
    int zombies = 0;
    std::array<int, 4> per_fault{};
};

// Expects the worker's death from `call`; a Timeout means the call hung.
template <class F>
void expect_death(F&& call, const Plan& p, Tally& tally) {
    try {
        call();
        ++tally.lost_frames;  // the call returned: not what the plan says
    } catch (const coproc::WorkerDied& e) {
        if (!(e.status() == expected_status(p))) ++tally.wrong_status;
    } catch (const coproc::Timeout&) {
        ++tally.hangs;
    }
}

template <class Messenger>
void run_cycle(const Plan& p, Tally& tally) {
    const auto fds_before = coproc::test::open_fds();
    long pid = 0;
    {
        coproc::WorkerResource<Messenger> w(&worker<Messenger>, p);
        pid = w.pid();
        auto& m = w.messenger();
        try {
            switch (p.traffic) {
                case Traffic::request_reply:
                    for (int i = 0; i < p.at; ++i) {
                        m.send_request(i);
                        if (m.receive_blocking(Channel{}, deadline) != i + 1) ++tally.lost_frames;
                    }
                    m.send_request(p.at);
                    expect_death([&] { (void)m.receive_blocking(Channel{}, deadline); }, p, tally);
                    break;
                case Traffic::worker_streams:
                    for (int i = 0; i < p.at; ++i) {
                        const Channel ch = i % 2 == 0 ? Channel{} : Channel{"odd"};
                        if (m.receive_blocking(ch, deadline) != i) ++tally.lost_frames;
                    }
                    expect_death([&] { (void)m.receive_blocking(Channel{}, deadline); }, p, tally);
                    break;
                case Traffic::worker_batches:
                    for (int i = 0; i < p.at; ++i)
                        if (m.receive_blocking(Channel{}, deadline) != i) ++tally.lost_frames;
                    expect_death([&] { m.await_available(deadline); }, p, tally);
                    break;
                case Traffic::host_streams:
                    expect_death(
                        [&] {
                            // Far more than the socket can hold: a send must fail once the worker is gone.
                            for (int i = 0; i < 1'000'000; ++i) m.send_norequest(i, Channel{}, deadline);
                        },
                        p, tally);
                    break;
            }
        } catch (const coproc::Timeout&) {
            ++tally.hangs;
        } catch (const coproc::WorkerDied&) {
            ++tally.lost_frames;  // died before the frames it should have sent
        }
    }
    if (!coproc::test::not_our_child(pid)) ++tally.zombies;
    if (coproc::test::open_fds() != fds_before) ++tally.fd_leaks;
    ++tally.cycles;
    ++tally.per_fault[static_cast<std::size_t>(p.fault)];
}

unsigned long env_number(const char* name, unsigned long fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::strtoul(v, nullptr, 10) : fallback;
}

}  // namespace

TEST_CASE("fault injection: dead workers never hang the host, lose frames, leak fds or leave zombies", "[faults]") {
    const unsigned long seed = env_number("COPROC_FAULT_SEED", std::random_device{}());
    const unsigned long cycles = env_number("COPROC_FAULT_CYCLES", 500);
    fmt::print("fault suite: seed {} (replay with COPROC_FAULT_SEED={}), {} cycles\n", seed, seed, cycles);
    std::mt19937_64 rng(seed);
    Tally tally;
    for (unsigned long c = 0; c < cycles; ++c) {
        Plan p{faults[rng() % faults.size()], traffics[rng() % traffics.size()], static_cast<int>(rng() % 64),
               static_cast<int>(1 + rng() % 120)};
        if (rng() % 2 == 0)
            run_cycle<coproc::PriorityMessenger<int>>(p, tally);
        else
            run_cycle<coproc::MultiMessenger<int>>(p, tally);
    }
    fmt::print(
        "fault suite: {} cycles, faults injected: SIGKILL {}, SIGSEGV {}, abort {}, _exit {}; "
        "hangs {}, wrong statuses {}, lost frames {}, fd leaks {}, zombies {}\n",
        tally.cycles, tally.per_fault[0], tally.per_fault[1], tally.per_fault[2], tally.per_fault[3], tally.hangs,
        tally.wrong_status, tally.lost_frames, tally.fd_leaks, tally.zombies);
    CHECK(tally.cycles == static_cast<int>(cycles));
    CHECK(tally.hangs == 0);
    CHECK(tally.wrong_status == 0);
    CHECK(tally.lost_frames == 0);
    CHECK(tally.fd_leaks == 0);
    CHECK(tally.zombies == 0);
}
