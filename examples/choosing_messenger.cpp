// Choosing a messenger: MultiMessenger (FIFO per channel) or PriorityMessenger
// (lowest priority first per channel). A pair can be made without any process;
// here we print both ends, as coproc's docs do.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <string>

int main() {
    // new_pair() returns named ends: no way to swap them by accident.
    auto [worker_side, host_side] = coproc::PriorityMessenger<std::string>::new_pair();
    fmt::print("worker side: {}\n", worker_side);
    fmt::print("host side:   {}\n", host_side);

    auto fifo = coproc::MultiMessenger<int>::new_pair();
    fmt::print("a FIFO pair: {}\n", fifo.host);
}
