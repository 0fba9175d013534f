// Errors: the hierarchy, exit statuses, and the remote-exception registry.
#include <catch2/catch.hpp>

#include <coproc/error.hpp>

#include <csignal>
#include <fmt/format.h>

namespace {
struct MyError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct Unregistered : std::runtime_error {
    using std::runtime_error::runtime_error;
};
}  // namespace

TEST_CASE("ExitStatus describes exits and signals", "[error]") {
    const auto exited = coproc::ExitStatus::exited_with(3);
    const auto killed = coproc::ExitStatus::killed_by(SIGKILL);
    CHECK(exited.exited());
    CHECK(exited.code() == 3);
    CHECK(exited.signal() == 0);
    CHECK_FALSE(exited.success());
    CHECK(killed.signaled());
    CHECK(killed.signal() == SIGKILL);
    CHECK(killed.exitcode() == -SIGKILL);
    CHECK(coproc::ExitStatus::exited_with(0).success());
    CHECK(exited.describe() == "exited with code 3");
    CHECK(killed.describe() == "killed by signal 9 (SIGKILL)");
    CHECK(fmt::format("{}", exited) == "ExitStatus(exited, code=3)");
    CHECK(fmt::format("{}", killed) == "ExitStatus(signaled, signal=9)");
}

TEST_CASE("every coproc exception derives from coproc::Error; WorkerDied is a ChannelClosed", "[error]") {
    CHECK_THROWS_AS(throw coproc::ResourceRequestedClose(), coproc::Error);
    CHECK_THROWS_AS(throw coproc::Timeout("t"), coproc::Error);
    CHECK_THROWS_AS(throw coproc::ProtocolError("p"), coproc::Error);
    CHECK_THROWS_AS(throw coproc::SpawnError("s"), coproc::Error);
    CHECK_THROWS_AS(throw coproc::RemoteError("T", "m"), coproc::Error);
    CHECK_THROWS_AS(throw coproc::WorkerDied(12, coproc::ExitStatus::exited_with(1)), coproc::ChannelClosed);
    CHECK_THROWS_WITH(throw coproc::WorkerDied(12, coproc::ExitStatus::exited_with(1)),
                      "worker 12 died: exited with code 1");
    CHECK_THROWS_WITH(throw coproc::ResourceRequestedClose(), "Resource requested that this process close.");
}

TEST_CASE("throw_remote rethrows standard and registered types, else RemoteError", "[error]") {
    CHECK_THROWS_AS(coproc::detail::throw_remote("std::invalid_argument", "bad"), std::invalid_argument);
    CHECK_THROWS_WITH(coproc::detail::throw_remote("std::out_of_range", "range"), "range");
    CHECK_THROWS_AS(coproc::detail::throw_remote("coproc::Timeout", "late"), coproc::Timeout);
    try {
        coproc::detail::throw_remote(coproc::detail::demangle(typeid(Unregistered)), "boom");
        FAIL("no exception");
    } catch (const coproc::RemoteError& e) {
        CHECK(e.type_name() == "(anonymous namespace)::Unregistered");
        CHECK(e.message() == "boom");
    }
    coproc::register_exception<MyError>();
    coproc::register_exception<MyError>();  // twice is harmless
    CHECK_THROWS_AS(coproc::detail::throw_remote("(anonymous namespace)::MyError", "mine"), MyError);
}
