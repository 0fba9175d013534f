// coproc/error.hpp — the exception hierarchy and the exit status of a worker.
//
//   try {
//       auto reply = w.messenger().receive_blocking(channel, 2s);
//   } catch (const coproc::WorkerDied& e) {      // the worker is gone
//       fmt::print("{}\n", e.status());          // ExitStatus(signaled, signal=9)
//   } catch (const coproc::Timeout&) {           // nothing within 2 s
//   }
//
// Everything coproc throws derives from coproc::Error (a std::runtime_error),
// except std::bad_alloc and exceptions thrown by user code that coproc calls.
//
// Remote exceptions: send_error(e) transmits the dynamic type name and what().
// The receiver rethrows the same C++ type when the name is registered (the
// standard exception types and coproc's own are registered already; register
// yours with coproc::register_exception<T>()), and RemoteError otherwise.
#pragma once

#include "coproc/detail/cxx20.hpp"

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <typeinfo>

#include <fmt/format.h>

namespace coproc {

/// How a worker process ended: exited with a code, or killed by a signal.
/// A plain value type; thread-safe like an int.
class ExitStatus {
public:
    enum class Kind : std::uint8_t { exited, signaled };

    [[nodiscard]] static constexpr ExitStatus exited_with(int code) noexcept { return {Kind::exited, code}; }
    [[nodiscard]] static constexpr ExitStatus killed_by(int signal) noexcept { return {Kind::signaled, signal}; }

    [[nodiscard]] constexpr Kind kind() const noexcept { return kind_; }
    [[nodiscard]] constexpr bool exited() const noexcept { return kind_ == Kind::exited; }
    [[nodiscard]] constexpr bool signaled() const noexcept { return kind_ == Kind::signaled; }
    /// Exit code if exited(), else -1.
    [[nodiscard]] constexpr int code() const noexcept { return exited() ? value_ : -1; }
    /// Signal number if signaled(), else 0.
    [[nodiscard]] constexpr int signal() const noexcept { return signaled() ? value_ : 0; }
    /// True for "exited with code 0".
    [[nodiscard]] constexpr bool success() const noexcept { return exited() && value_ == 0; }
    /// Python multiprocessing's exitcode: the code, or -signal.
    [[nodiscard]] constexpr int exitcode() const noexcept { return exited() ? value_ : -value_; }

    /// "exited with code 3" / "killed by signal 9 (SIGKILL)".
    [[nodiscard]] std::string describe() const;

    friend constexpr bool operator==(const ExitStatus&, const ExitStatus&) noexcept = default;

private:
    constexpr ExitStatus(Kind kind, int value) noexcept : kind_(kind), value_(value) {}
    Kind kind_;
    int value_;
};

/// Root of everything coproc throws.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Raised by the receive call that reads a close request from the peer.
/// Unlike Python coproc's (a BaseException), ours is caught by
/// `catch (const std::exception&)`. A worker target that lets it escape exits
/// cleanly with code 0.
class ResourceRequestedClose : public Error {
public:
    ResourceRequestedClose() : Error("Resource requested that this process close.") {}
    explicit ResourceRequestedClose(const std::string& what) : Error(what) {}
};

/// The peer closed its end: in a worker, the host is gone. Data the peer sent
/// before closing is still receivable; this is raised only when a call needs more.
class ChannelClosed : public Error {
public:
    using Error::Error;
};

/// Host side: the worker process ended. Carries its exit status.
/// Derives from ChannelClosed, so `catch (const ChannelClosed&)` covers both sides.
class WorkerDied : public ChannelClosed {
public:
    WorkerDied(long pid, ExitStatus status);
    [[nodiscard]] ExitStatus status() const noexcept { return status_; }
    [[nodiscard]] long pid() const noexcept { return pid_; }

private:
    long pid_;
    ExitStatus status_;
};

/// A timed call's deadline passed. Nothing was consumed or sent (see each call).
class Timeout : public Error {
public:
    using Error::Error;
};

/// Malformed or oversized input from the peer, or a message type mismatch.
class ProtocolError : public Error {
public:
    using Error::Error;
};

/// An exception from the peer whose type is not registered here.
class RemoteError : public Error {
public:
    RemoteError(std::string type_name, std::string message);
    [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }
    [[nodiscard]] const std::string& message() const noexcept { return message_; }

private:
    std::string type_name_;
    std::string message_;
};

/// A worker could not be started (fork failed, or no startup handshake in time).
class SpawnError : public Error {
public:
    using Error::Error;
};

/// A system call failed for a reason that is not one of the cases above.
class SystemError : public Error {
public:
    SystemError(std::error_code code, const std::string& operation);
    [[nodiscard]] std::error_code code() const noexcept { return code_; }

private:
    std::error_code code_;
};

namespace detail {
using ExceptionFactory = void (*)(const std::string& message);  // throws

/// Registers a factory that throws the exception named `type_name`. Thread-safe.
void register_exception_factory(const std::string& type_name, ExceptionFactory factory);
/// Throws the registered type for `type_name`, or RemoteError.
[[noreturn]] void throw_remote(const std::string& type_name, const std::string& message);
/// Demangled name of a type_info ("std::invalid_argument").
[[nodiscard]] std::string demangle(const std::type_info& info);
}  // namespace detail

/// Makes `E` arrive as `E` when a peer sends it with send_error. `E` must be
/// constructible from a std::string (its what()). Both sides must register it
/// (in fork mode, registering before starting workers is enough).
/// Thread-safe; registering twice is harmless.
template <class E>
void register_exception() {
    static_assert(std::is_constructible_v<E, const std::string&>,
                  "register_exception<E>: E must be constructible from its what() string");
    detail::register_exception_factory(detail::demangle(typeid(E)),
                                       [](const std::string& message) { throw E(message); });
}

}  // namespace coproc

/// ExitStatus(exited, code=0) / ExitStatus(signaled, signal=9)
template <>
struct fmt::formatter<coproc::ExitStatus> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const coproc::ExitStatus& s, Ctx& ctx) const {
        if (s.exited()) return fmt::format_to(ctx.out(), "ExitStatus(exited, code={})", s.code());
        return fmt::format_to(ctx.out(), "ExitStatus(signaled, signal={})", s.signal());
    }
};
