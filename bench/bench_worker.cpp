// The worker program of bench_ipc's spawn-mode figures. "exit": returns at
// once (the raw posix_spawn + waitpid baseline runs the same program, so both
// pay the same exec and dynamic linking); otherwise a coproc worker whose
// target returns at once, as BM_coproc_spawn's forked one.
#include <coproc/worker_main.hpp>

#include <string_view>

int main(int argc, char** argv) {
    if (argc > 1 && std::string_view(argv[1]) == "exit") return 0;
    return coproc::worker_main<coproc::MultiMessenger<int>>([](coproc::MultiMessenger<int>&) {});
}
