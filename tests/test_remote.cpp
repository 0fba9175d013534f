// Remote pool workers over ZeroMQ on loopback (coproc/remote_pool.hpp):
// remote-only and mixed maps, workers SIGKILLed and SIGSTOPped mid-map
// (every task resolves once, correctly), a stopped worker rejoining, wrong
// keys and other types refused, garbage frames survived, a late answer
// from a worker already given up ignored, a host killed under its workers
// (exit or wait, as configured). Worker processes run
// tests/remote_worker.cpp.
#include <catch2/catch.hpp>

#include <coproc/pool.hpp>
#include <coproc/remote_pool.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "remote_wire.hpp"  // lib/: the raw peer below speaks the wire by hand
#include "support.hpp"

extern char** environ;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using IntPool = coproc::Pool<int, long>;

// A remote worker process (tests/remote_worker.cpp); killed and reaped at
// the end of its scope. Its stderr goes to a file of its own.
class RemoteProc {
public:
    explicit RemoteProc(std::vector<std::string> args) {
        const char* path = std::getenv("COPROC_REMOTE_WORKER");
        REQUIRE(path != nullptr);
        args.insert(args.begin(), path);
        err_path_ = fmt::format("/tmp/coproc-remote-{}-{}.err", ::getpid(), ++counter);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        pid_t pid = 0;
        REQUIRE(posix_spawn(&pid, path, &fa, nullptr, argv.data(), environ) == 0);
        posix_spawn_file_actions_destroy(&fa);
        pid_ = pid;
    }
    RemoteProc(const RemoteProc&) = delete;
    RemoteProc& operator=(const RemoteProc&) = delete;
    ~RemoteProc() {
        if (!status_) {
            ::kill(pid_, SIGKILL);
            ::kill(pid_, SIGCONT);
            (void)::waitpid(pid_, nullptr, 0);
        }
        (void)std::remove(err_path_.c_str());
    }
    void signal(int sig) const { ::kill(pid_, sig); }
    [[nodiscard]] long pid() const noexcept { return pid_; }
    // Its exit status (waitpid's), or nullopt if it still runs at the deadline.
    std::optional<int> wait_exit(std::chrono::milliseconds limit) {
        const auto until = Clock::now() + limit;
        while (!status_) {
            int s = 0;
            if (::waitpid(pid_, &s, WNOHANG) == pid_) {
                status_ = s;
                break;
            }
            if (Clock::now() >= until) return std::nullopt;
            std::this_thread::sleep_for(5ms);  // polling a deadline, not synchronizing
        }
        return status_;
    }
    [[nodiscard]] std::string stderr_text() const {
        std::ifstream in(err_path_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

private:
    static inline int counter = 0;
    pid_t pid_ = 0;
    std::optional<int> status_;
    std::string err_path_;
};

// Waits (bounded) until pred() holds; false at the deadline.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 20s) {
    const auto until = Clock::now() + limit;
    while (!pred()) {
        if (Clock::now() >= until) return false;
        std::this_thread::sleep_for(5ms);  // polling a deadline, not synchronizing
    }
    return true;
}

coproc::RemoteListenOptions loopback(std::chrono::milliseconds interval = 100ms,
                                     std::chrono::milliseconds timeout = 600ms) {
    coproc::RemoteListenOptions o;
    o.bind = "tcp://127.0.0.1:*";
    o.heartbeat_interval = interval;
    o.heartbeat_timeout = timeout;
    return o;
}

// A pool of no local worker, served by `listener`'s remote workers.
coproc::PoolOptions remote_only(const std::shared_ptr<coproc::RemoteWorkers>& listener, std::size_t max_retries = 2) {
    coproc::PoolOptions o;
    o.workers = 0;
    o.max_retries = max_retries;
    o.remote = listener;
    return o;
}

std::vector<int> range(int n) {
    std::vector<int> v;
    for (int i = 0; i < n; ++i) v.push_back(i);
    return v;
}

void check_squares(const std::vector<long>& got, int n) {
    REQUIRE(got.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        if (got[static_cast<std::size_t>(i)] != static_cast<long>(i) * i) FAIL("task " << i << " has a wrong result");
}

long local_square(const int& x) { return static_cast<long>(x) * x; }

}  // namespace

TEST_CASE("a pool served by remote workers only maps correctly; they exit 0 when it closes", "[remote]") {
    auto listener = coproc::listen_for_workers(loopback());
    const coproc::PoolOptions o = remote_only(listener);
    std::optional<IntPool> pool(std::in_place, local_square, o);
    const std::string ep = listener->endpoint();
    REQUIRE(ep.starts_with("tcp://127.0.0.1:"));
    RemoteProc a({ep, "square"});
    RemoteProc b({ep, "square"});
    REQUIRE(eventually([&] { return listener->stats().connected == 2; }));
    check_squares(pool->map(range(500)), 500);
    const auto stats = pool->stats();
    REQUIRE(stats.workers.size() == 2);
    for (const auto& w : stats.workers) {
        CHECK(w.pid == 0);
        CHECK(!w.remote.empty());
    }
    CHECK(stats.workers[0].tasks_served + stats.workers[1].tasks_served == 500);
    pool.reset();
    for (RemoteProc* p : {&a, &b}) {
        const auto status = p->wait_exit(10s);
        REQUIRE(status);
        CHECK(WIFEXITED(*status));
        CHECK(WEXITSTATUS(*status) == 0);
    }
}

TEST_CASE("local and remote workers serve one pool at once", "[remote]") {
    auto listener = coproc::listen_for_workers(loopback());
    coproc::PoolOptions o;
    o.workers = 2;
    o.initializer = [] { coproc::test::child_watchdog(120); };
    o.remote = listener;
    IntPool pool(
        [](const int& x) -> long {
            const auto until = Clock::now() + 800us;
            while (Clock::now() < until) {
            }
            return static_cast<long>(x) * x;
        },
        o);
    RemoteProc a({listener->endpoint(), "square"});
    RemoteProc b({listener->endpoint(), "square"});
    REQUIRE(eventually([&] { return listener->stats().connected == 2; }));
    std::size_t progress_calls = 0;
    coproc::MapOptions m;
    m.chunksize = 4;
    m.progress = [&](const coproc::PoolProgress&) { ++progress_calls; };
    check_squares(pool.map(range(2000), m), 2000);
    CHECK(progress_calls == 2000);
    std::size_t local = 0, remote = 0;
    for (const auto& w : pool.stats().workers) (w.remote.empty() ? local : remote) += w.tasks_served;
    CHECK(local + remote == 2000);
    CHECK(local > 0);
    CHECK(remote > 0);
    // Futures and priorities work the same.
    auto f = pool.submit(12, 0.0);
    CHECK(f.get(10s) == 144);
}

TEST_CASE(
    "remote workers SIGKILLed and SIGSTOPped mid-map: every task resolves once and correctly; the stopped one "
    "rejoins when continued",
    "[remote]") {
    auto listener = coproc::listen_for_workers(loopback());
    const coproc::PoolOptions o = remote_only(listener, 3);
    IntPool pool(local_square, o);
    const std::string ep = listener->endpoint();
    RemoteProc killed({ep, "square"});
    RemoteProc stopped({ep, "square"});
    RemoteProc steady({ep, "square"});
    REQUIRE(eventually([&] { return listener->stats().connected == 3; }));
    constexpr int n = 3000;
    std::vector<std::size_t> seen(n, 0);
    bool struck = false;
    coproc::MapOptions m;
    m.chunksize = 5;
    m.progress = [&](const coproc::PoolProgress& p) {
        if (!struck && p.done >= n / 5) {
            struck = true;
            killed.signal(SIGKILL);
            stopped.signal(SIGSTOP);
        }
    };
    for (const auto& [index, result] : pool.map_unordered(range(n), m)) {
        ++seen[index];
        if (result != static_cast<long>(index) * static_cast<long>(index)) FAIL("task " << index << ": " << result);
    }
    REQUIRE(struck);
    // Each task resolved exactly once.
    CHECK(std::count(seen.begin(), seen.end(), std::size_t{1}) == n);
    CHECK(listener->stats().lost >= 2);
    const auto joined_before = listener->stats().joined;
    stopped.signal(SIGCONT);
    // Told it was lost (the host's "lost" waited in its socket), it joins
    // afresh and serves; nothing it held was delivered twice (above).
    const bool rejoined = eventually([&] { return listener->stats().joined > joined_before; });
    INFO("the stopped worker's stderr: " << stopped.stderr_text());
    REQUIRE(rejoined);
    check_squares(pool.map(range(200)), 200);
}

TEST_CASE("past max_retries a task whose remote worker was lost fails with RemoteWorkerLost", "[remote]") {
    auto listener = coproc::listen_for_workers(loopback());
    const coproc::PoolOptions o = remote_only(listener, 0);
    IntPool pool(local_square, o);
    RemoteProc worker({listener->endpoint(), "square"});
    REQUIRE(eventually([&] { return listener->stats().connected == 1; }));
    CHECK(pool.submit(3).get(10s) == 9);
    worker.signal(SIGSTOP);  // it holds the next task when the host gives it up
    auto f = pool.submit(4);
    CHECK_THROWS_AS(f.get(20s), coproc::RemoteWorkerLost);
    CHECK(listener->stats().lost == 1);
}

TEST_CASE("CURVE: a listed key joins; another key is refused and counted, and that worker gives up", "[remote]") {
    const auto host = coproc::generate_curve_keys();
    const auto good = coproc::generate_curve_keys();
    const auto bad = coproc::generate_curve_keys();
    auto opts = loopback();
    opts.keys = host;
    opts.worker_keys = {good.public_key};
    auto listener = coproc::listen_for_workers(opts);
    const coproc::PoolOptions o = remote_only(listener);
    IntPool pool(local_square, o);
    const std::string ep = listener->endpoint();
    RemoteProc intruder({ep, "square", host.public_key, bad.public_key, bad.secret_key});
    REQUIRE(eventually([&] { return listener->stats().refused >= 1; }));
    RemoteProc member({ep, "square", host.public_key, good.public_key, good.secret_key});
    REQUIRE(eventually([&] { return listener->stats().connected == 1; }));
    check_squares(pool.map(range(100)), 100);
    const auto status = intruder.wait_exit(10s);  // join_timeout 2 s: nothing answered it
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 3);
    CHECK(listener->stats().joined == 1);
}

TEST_CASE("a worker of other message types is refused with the reason and exits 2", "[remote]") {
    auto listener = coproc::listen_for_workers(loopback());
    const coproc::PoolOptions o = remote_only(listener);
    IntPool pool(local_square, o);
    RemoteProc other({listener->endpoint(), "strings"});
    const auto status = other.wait_exit(10s);
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK_THAT(other.stderr_text(), Catch::Contains("refused") && Catch::Contains("types"));
    CHECK(listener->stats().refused == 1);
    CHECK(listener->stats().joined == 0);
}

TEST_CASE("garbage frames are dropped and counted; the pool serves on", "[remote]") {
    auto opts = loopback();
    opts.max_message_size = 1 << 20;
    auto listener = coproc::listen_for_workers(opts);
    const coproc::PoolOptions o = remote_only(listener);
    IntPool pool(local_square, o);
    const std::string ep = listener->endpoint();
    {
        zmq::context_t ctx;
        zmq::socket_t raw(ctx, zmq::socket_type::dealer);
        raw.set(zmq::sockopt::linger, 2000);
        raw.connect(ep);
        raw.send(zmq::str_buffer(""), zmq::send_flags::none);             // empty
        raw.send(zmq::str_buffer("\x63garbage"), zmq::send_flags::none);  // unknown kind
        raw.send(zmq::str_buffer("\x04pool before hello"), zmq::send_flags::none);
        raw.send(zmq::str_buffer("\x01\x02\x00\x00\x00\xff\xff\xff\x7f"),
                 zmq::send_flags::none);                           // hello (protocol 2), absurd length
        raw.send(zmq::str_buffer("a"), zmq::send_flags::sndmore);  // three parts
        raw.send(zmq::str_buffer("b"), zmq::send_flags::none);
        const std::string huge(2 << 20, 'x');  // over max_message_size
        raw.send(zmq::buffer(huge), zmq::send_flags::none);
    }
    REQUIRE(eventually([&] { return listener->stats().malformed >= 5; }));
    RemoteProc worker({ep, "square"});
    REQUIRE(eventually([&] { return listener->stats().connected == 1; }));
    check_squares(pool.map(range(100)), 100);
}

// The next pool frame `peer` receives within `limit` (skipping heartbeats),
// decoded; nullopt at the deadline. `drive` runs between polls: the pool
// dispatches only inside its calls.
std::optional<coproc::detail::PoolMessage<int, long>> next_chunk(zmq::socket_t& peer, std::chrono::milliseconds limit,
                                                                 const std::function<void()>& drive) {
    namespace wire = coproc::detail::remote;
    const auto until = Clock::now() + limit;
    while (Clock::now() < until) {
        drive();
        zmq::pollitem_t item{peer.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(20));
        zmq::message_t msg;
        if (!peer.recv(msg, zmq::recv_flags::dontwait)) continue;
        const auto frame = wire::parse_frame(msg.to_string_view());
        if (frame && frame->kind == wire::Kind::pool)
            return coproc::decode<coproc::detail::PoolMessage<int, long>>(frame->body);
    }
    return std::nullopt;
}

// A peer speaking the wire by hand: it joins `listener` (hello, welcome)
// and says it is ready, as remote_worker_main does; then it does only what
// the test makes it do (no heartbeats).
zmq::socket_t join_raw_peer(zmq::context_t& ctx, coproc::RemoteWorkers& listener) {
    namespace wire = coproc::detail::remote;
    using Message = coproc::detail::PoolMessage<int, long>;
    zmq::socket_t peer(ctx, zmq::socket_type::dealer);
    peer.set(zmq::sockopt::linger, 0);
    peer.connect(listener.endpoint());
    const auto connected = listener.stats().connected;
    const std::string hello = coproc::detail::remote_hello("raw-peer", typeid(int).name(), typeid(long).name(),
                                                           coproc::detail::type_fingerprint<Message>);
    peer.send(zmq::buffer(wire::make_frame(wire::Kind::hello, hello)), zmq::send_flags::none);
    REQUIRE(eventually([&] { return listener.stats().connected == connected + 1; }));
    Message ready;
    ready.kind = coproc::detail::PoolMessageKind::ready;
    std::string ready_bytes;
    coproc::encode_append(ready_bytes, ready);
    peer.send(zmq::buffer(wire::make_frame(wire::Kind::pool, ready_bytes)), zmq::send_flags::none);
    return peer;
}

TEST_CASE("an answer from a worker already given up is ignored and counted late; another answers the task once",
          "[remote]") {
    namespace wire = coproc::detail::remote;
    auto listener = coproc::listen_for_workers(loopback());
    IntPool pool(local_square, remote_only(listener));
    const std::string ep = listener->endpoint();
    // A peer that joins, takes a task, then falls silent (cut off): no
    // heartbeats, so the host gives it up after the timeout.
    zmq::context_t ctx;
    zmq::socket_t peer = join_raw_peer(ctx, *listener);
    auto f = pool.submit(7);
    const auto chunk = next_chunk(peer, 10s, [&] { (void)f.ready(); });
    REQUIRE(chunk);
    REQUIRE(chunk->tasks == std::vector<int>{7});
    REQUIRE(eventually([&] { return listener->stats().lost == 1; }));
    // Its answer (a wrong one, to tell it apart) arrives after that.
    const auto wrong = [](const int&) -> long { return 999; };
    std::string answer;
    coproc::encode_append(answer, coproc::detail::answer_chunk<int, long>(wrong, *chunk));
    peer.send(zmq::buffer(wire::make_frame(wire::Kind::pool, answer)), zmq::send_flags::none);
    REQUIRE(eventually([&] { return listener->stats().late >= 1; }));
    // The task went back to the queue: a real worker answers it, once.
    RemoteProc worker({ep, "square"});
    CHECK(f.get(20s) == 49);
    CHECK(listener->stats().joined == 2);
}

TEST_CASE("an answer that does not match its chunk gives its worker up; the task runs elsewhere, once", "[remote]") {
    namespace wire = coproc::detail::remote;
    auto listener = coproc::listen_for_workers(loopback());
    IntPool pool(local_square, remote_only(listener));
    zmq::context_t ctx;
    zmq::socket_t peer = join_raw_peer(ctx, *listener);
    auto f = pool.submit(7);
    auto chunk = next_chunk(peer, 10s, [&] { (void)f.ready(); });
    REQUIRE(chunk);
    // Two results for its one task: well-formed bytes, a wrong answer.
    chunk->tasks.push_back(8);
    std::string answer;
    coproc::encode_append(answer, coproc::detail::answer_chunk<int, long>(local_square, *chunk));
    peer.send(zmq::buffer(wire::make_frame(wire::Kind::pool, answer)), zmq::send_flags::none);
    REQUIRE(eventually([&] {
        (void)f.ready();  // the pool reads answers inside its calls
        return listener->stats().lost == 1;
    }));
    CHECK_FALSE(f.ready());
    RemoteProc worker({listener->endpoint(), "square"});
    CHECK(f.get(20s) == 49);
    CHECK(pool.stats().retried == 1);
}

TEST_CASE("bad listen options are invalid_argument", "[remote]") {
    coproc::RemoteListenOptions o;
    CHECK_THROWS_AS(coproc::listen_for_workers(o), std::invalid_argument);  // no bind
    o.bind = "tcp://0.0.0.0:0";
    CHECK_THROWS_WITH(coproc::listen_for_workers(o), Catch::Contains("loopback"));
    o.allow_insecure = true;
    CHECK_NOTHROW(coproc::listen_for_workers(o));
    o.keys = coproc::generate_curve_keys();
    CHECK_THROWS_WITH(coproc::listen_for_workers(o), Catch::Contains("worker_keys"));
    o.worker_keys = {"not a key"};
    CHECK_THROWS_AS(coproc::listen_for_workers(o), std::invalid_argument);
    auto ok = loopback();
    ok.heartbeat_timeout = ok.heartbeat_interval;
    CHECK_THROWS_AS(coproc::listen_for_workers(ok), std::invalid_argument);
    // An address in use is the pool constructor's error.
    auto first = coproc::listen_for_workers(loopback());
    IntPool pool(local_square, remote_only(first));
    auto taken = loopback();
    taken.bind = first->endpoint();
    CHECK_THROWS_AS(IntPool(local_square, remote_only(coproc::listen_for_workers(taken))), coproc::Error);
}

TEST_CASE("a host killed under its workers: exit-mode workers exit 3, wait-mode ones wait, within the timeout",
          "[remote]") {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    std::fflush(nullptr);
    const pid_t host = ::fork();
    REQUIRE(host >= 0);
    if (host == 0) {
        coproc::test::child_watchdog(60);
        ::close(ready[0]);
        auto listener = coproc::listen_for_workers(loopback(100ms, 500ms));
        coproc::PoolOptions o;
        o.workers = 0;
        o.remote = listener;
        IntPool pool(local_square, o);
        const std::string ep = listener->endpoint() + "\n";
        (void)!::write(ready[1], ep.data(), ep.size());
        // Both workers joined and served a task (so each has had its
        // welcome: the host counts a worker joined when it sends that, and
        // a host killed at once may not have sent it yet): say so, then
        // serve until killed.
        const auto until = Clock::now() + 20s;
        const auto both_served = [&] {
            const auto workers = pool.stats().workers;
            return std::count_if(workers.begin(), workers.end(), [](const auto& w) { return w.tasks_served > 0; }) >= 2;
        };
        coproc::MapOptions one_by_one;
        one_by_one.chunksize = 1;
        while (!both_served() && Clock::now() < until) (void)pool.map(range(64), one_by_one);
        (void)!::write(ready[1], "joined\n", 7);
        for (;;) (void)pool.submit(1).get(60s);
    }
    ::close(ready[1]);
    std::string ep;
    char c = 0;
    while (::read(ready[0], &c, 1) == 1 && c != '\n') ep.push_back(c);
    REQUIRE(ep.starts_with("tcp://"));
    RemoteProc leaver({ep, "square"});
    RemoteProc waiter({ep, "wait"});
    std::string joined;
    while (::read(ready[0], &c, 1) == 1 && c != '\n') joined.push_back(c);
    ::close(ready[0]);
    REQUIRE(joined == "joined");
    ::kill(host, SIGKILL);
    (void)::waitpid(host, nullptr, 0);
    const auto killed_at = Clock::now();
    const auto status = leaver.wait_exit(10s);
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 3);
    CHECK(Clock::now() - killed_at < 5s);  // the timeout is 0.5 s
    CHECK_THAT(leaver.stderr_text(), Catch::Contains("silent"));
    // The waiting one is still there, and idle: it does not spin.
    const auto cpu_before = coproc::test::cpu_ticks(waiter.pid());
    CHECK(!waiter.wait_exit(1s));
    CHECK(coproc::test::cpu_ticks(waiter.pid()) - cpu_before < 20);  // under 0.2 s of CPU in 1 s
}
