// The exception hierarchy's out-of-line parts and the remote-exception registry.
#include "coproc/error.hpp"

#include <cxxabi.h>
#include <string.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>

#include <fmt/format.h>

namespace coproc {

std::string ExitStatus::describe() const {
    if (exited()) return fmt::format("exited with code {}", value_);
    const char* abbrev = ::sigabbrev_np(value_);
    if (abbrev == nullptr) return fmt::format("killed by signal {}", value_);
    return fmt::format("killed by signal {} (SIG{})", value_, abbrev);
}

WorkerDied::WorkerDied(long pid, ExitStatus status)
    : ChannelClosed(fmt::format("worker {} died: {}", pid, status.describe())), pid_(pid), status_(status) {}

RemoteError::RemoteError(std::string type_name, std::string message)
    : Error(fmt::format("{}: {}", type_name, message)),
      type_name_(std::move(type_name)),
      message_(std::move(message)) {}

SystemError::SystemError(std::error_code code, const std::string& operation)
    : Error(fmt::format("{}: {}", operation, code.message())), code_(code) {}

namespace detail {
namespace {

struct Registry {
    std::mutex mutex;
    std::unordered_map<std::string, ExceptionFactory> factories;
};

template <class E>
void add(Registry& r) {
    r.factories.emplace(demangle(typeid(E)), [](const std::string& message) { throw E(message); });
}

Registry& registry() {
    // Built once, thread-safe (magic static); leaked on purpose so that a
    // worker's _exit or a late static destructor never sees it destroyed.
    static Registry* r = [] {
        auto* reg = new Registry;
        add<std::runtime_error>(*reg);
        add<std::logic_error>(*reg);
        add<std::invalid_argument>(*reg);
        add<std::domain_error>(*reg);
        add<std::length_error>(*reg);
        add<std::out_of_range>(*reg);
        add<std::range_error>(*reg);
        add<std::overflow_error>(*reg);
        add<std::underflow_error>(*reg);
        add<Error>(*reg);
        add<ResourceRequestedClose>(*reg);
        add<ChannelClosed>(*reg);
        add<Timeout>(*reg);
        add<ProtocolError>(*reg);
        add<SpawnError>(*reg);
        return reg;
    }();
    return *r;
}

}  // namespace

void register_exception_factory(const std::string& type_name, ExceptionFactory factory) {
    auto& r = registry();
    const std::lock_guard lock(r.mutex);
    r.factories[type_name] = factory;
}

void throw_remote(const std::string& type_name, const std::string& message) {
    ExceptionFactory factory = nullptr;
    {
        auto& r = registry();
        const std::lock_guard lock(r.mutex);
        if (auto it = r.factories.find(type_name); it != r.factories.end()) factory = it->second;
    }
    if (factory != nullptr) factory(message);  // throws
    throw RemoteError(type_name, message);
}

std::string demangle(const std::type_info& info) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(info.name(), nullptr, nullptr, &status), std::free);
    if (status != 0 || !name) return info.name();
    return name.get();
}

}  // namespace detail
}  // namespace coproc
