// Shared values: several workers each add one file's size into a SharedValue
// under its lock (Python's multiprocessing.Value + get_lock()). The example
// makes its own files, and checks the total against a direct sum.
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Messenger = coproc::MultiMessenger<int>;

// Runs in each worker: stat one file, add its size to the shared total.
void add_file_size(Messenger&, const fs::path& file, coproc::SharedValue<std::uint64_t> total) {
    const auto size = fs::file_size(file);
    std::lock_guard guard(total.get_lock());  // a read-modify-write: take the lock
    total.value() += size;
}

int main() {
    // Some files of known sizes in a fresh directory.
    const fs::path dir = fs::temp_directory_path() / fmt::format("coproc-file-sizes-{}", ::getpid());
    fs::create_directories(dir);
    std::vector<fs::path> files;
    for (int i = 1; i <= 6; ++i) {
        files.push_back(dir / fmt::format("file{}.txt", i));
        std::ofstream(files.back()) << std::string(static_cast<std::size_t>(i * 1000 + i), 'x');
    }

    coproc::SharedValue<std::uint64_t> total(0);  // created before the workers: they share it
    {
        std::vector<coproc::WorkerResource<Messenger>> workers;
        workers.reserve(files.size());
        for (const auto& f : files) workers.emplace_back(add_file_size, f, total);
        for (auto& w : workers) (void)w.join();
    }

    std::uintmax_t direct = 0;
    for (const auto& f : files) direct += fs::file_size(f);
    fmt::print("{} workers counted {} bytes; direct sum {} bytes: {}\n", files.size(), total.load(), direct,
               total.load() == direct ? "equal" : "DIFFERENT");
    fs::remove_all(dir);
}
