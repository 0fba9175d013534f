// Shared state against raw baselines in the same run (one process, one CPU):
// locked increments vs a raw robust process-shared pthread mutex in shared
// memory, fetch_add vs std::atomic_ref, and SharedMemory get/set of small values.
#include <benchmark/benchmark.h>

#include <coproc/shared_memory.hpp>
#include <coproc/shared_value.hpp>

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace {

struct RawShared {
    pthread_mutex_t mutex;
    alignas(8) std::int64_t value;
};

RawShared* make_raw() {
    void* p = ::mmap(nullptr, sizeof(RawShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    auto* raw = static_cast<RawShared*>(p);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&raw->mutex, &attr);
    raw->value = 0;
    return raw;
}

void BM_raw_robust_mutex_increment(benchmark::State& state) {
    RawShared* raw = make_raw();
    for (auto _ : state) {
        if (pthread_mutex_lock(&raw->mutex) == EOWNERDEAD) pthread_mutex_consistent(&raw->mutex);
        ++raw->value;
        pthread_mutex_unlock(&raw->mutex);
    }
    benchmark::DoNotOptimize(raw->value);
    state.SetItemsProcessed(state.iterations());
    ::munmap(raw, sizeof(RawShared));
}

void BM_shared_value_locked_increment(benchmark::State& state) {
    coproc::SharedValue<std::int64_t> v(0);
    for (auto _ : state) {
        std::lock_guard guard(v.get_lock());
        ++v.value();
    }
    benchmark::DoNotOptimize(v.value());
    state.SetItemsProcessed(state.iterations());
}

void BM_raw_atomic_ref_fetch_add(benchmark::State& state) {
    RawShared* raw = make_raw();
    for (auto _ : state) benchmark::DoNotOptimize(std::atomic_ref<std::int64_t>(raw->value).fetch_add(1));
    state.SetItemsProcessed(state.iterations());
    ::munmap(raw, sizeof(RawShared));
}

void BM_shared_value_fetch_add(benchmark::State& state) {
    coproc::SharedValue<std::int64_t> v(0);
    for (auto _ : state) benchmark::DoNotOptimize(v.fetch_add(1));
    state.SetItemsProcessed(state.iterations());
}

void BM_shared_memory_set(benchmark::State& state) {
    coproc::SharedMemory m;
    int i = 0;
    for (auto _ : state) m.set("key", ++i);
    state.SetItemsProcessed(state.iterations());
}

void BM_shared_memory_get(benchmark::State& state) {
    coproc::SharedMemory m;
    m.set("key", 42);
    for (auto _ : state) benchmark::DoNotOptimize(m.get<int>("key"));
    state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_raw_robust_mutex_increment);
BENCHMARK(BM_shared_value_locked_increment);
BENCHMARK(BM_raw_atomic_ref_fetch_add);
BENCHMARK(BM_shared_value_fetch_add);
BENCHMARK(BM_shared_memory_set);
BENCHMARK(BM_shared_memory_get);

int main(int argc, char** argv) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (::sched_setaffinity(0, sizeof one, &one) != 0) std::perror("sched_setaffinity");
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
