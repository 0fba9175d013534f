// A consumer of libcoproc-bus: one message through a publisher and a subscriber.
#include <coproc/bus.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <string>

int main() {
    using namespace std::chrono_literals;
    const coproc::Bus bus("ipc:///tmp/coproc-consumer-" + std::to_string(::getpid()));
    auto pub = bus.publish();
    pub.start();
    auto sub = bus.subscribe("greetings");
    sub.wait_ready(10s);
    pub.put("greetings", coproc::Json{{"hello", "world"}});
    const auto m = sub.get(10s);
    fmt::print("bus: {} {}\n", m ? m->channel : "nothing", m ? m->message.dump() : "");
    return m ? 0 : 1;
}
