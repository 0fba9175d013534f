// coproc/detail/pool_worker.hpp — the pool's wire message and the loop a
// pool worker runs. Internal.
//
// One frame per chunk of tasks each way, on a MultiMessenger<PoolMessage>:
// the host sends a chunk (its id and tasks), the worker answers with the
// chunk's results in the same order, one result per task; a task that threw
// has a default-constructed result and its error payload listed. A worker
// answers the chunks in the order they came, so the host matches each answer
// with the oldest chunk it handed that worker. After its initializer, a
// worker says it is ready; a worker that reaches max_tasks_per_worker marks
// its last answer and exits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "coproc/detail/frame.hpp"
#include "coproc/error.hpp"
#include "coproc/messenger.hpp"

namespace coproc::detail {

enum class PoolMessageKind : std::uint8_t { tasks = 1, results = 2, ready = 3 };

template <class Task, class Result>
struct PoolMessage {
    std::uint64_t chunk = 0;
    PoolMessageKind kind = PoolMessageKind::tasks;
    bool last = false;  // results: the worker exits after this answer
    std::vector<Task> tasks;
    std::vector<Result> results;
    std::vector<std::uint32_t> failed;  // indices of the tasks that threw...
    std::vector<std::string> errors;    // ...and their error payloads (encode_error)

    template <class Archive>
    void serialize(Archive& archive) {
        archive(chunk, kind, last, tasks, results, failed, errors);
    }
};

/// The answer to one chunk, into `out` (its buffers reused): fn(task) for
/// each of its tasks, in order; a task that threw has a default result and
/// its error payload listed.
template <class Task, class Result, class F>
void answer_chunk_into(PoolMessage<Task, Result>& out, F& fn, const PoolMessage<Task, Result>& in) {
    out.chunk = in.chunk;
    out.kind = PoolMessageKind::results;
    out.last = false;
    out.tasks.clear();
    out.failed.clear();
    out.errors.clear();
    out.results.clear();
    out.results.resize(in.tasks.size());
    for (std::size_t i = 0; i < in.tasks.size(); ++i) {
        try {
            out.results[i] = fn(static_cast<const Task&>(in.tasks[i]));
        } catch (const std::exception& e) {
            out.failed.push_back(static_cast<std::uint32_t>(i));
            out.errors.push_back(encode_error(demangle(typeid(e)), e.what()));
        } catch (...) {
            out.failed.push_back(static_cast<std::uint32_t>(i));
            out.errors.push_back(encode_error("unknown exception", "non-standard exception"));
        }
    }
}
template <class Task, class Result, class F>
PoolMessage<Task, Result> answer_chunk(F& fn, const PoolMessage<Task, Result>& in) {
    PoolMessage<Task, Result> out;
    answer_chunk_into(out, fn, in);
    return out;
}

/// decode_into a message that may hold an earlier one: its vectors are
/// emptied first (their capacity kept). Throws ProtocolError.
template <class Task, class Result>
void decode_reusing(PoolMessage<Task, Result>& m, std::string_view bytes) {
    m.tasks.clear();
    m.results.clear();
    m.failed.clear();
    m.errors.clear();
    decode_into(m, bytes);
}

/// A pool worker's whole life on messenger `m`: init() (may be empty; an
/// exception there escapes, so the host gets it as the worker's error),
/// then "ready", then chunk after chunk until a close request (which
/// escapes as ResourceRequestedClose: a clean exit) or until it has run
/// `max_tasks` tasks (0: no limit). Returns the exit code.
template <class Task, class Result, class F>
int serve_pool(MultiMessenger<PoolMessage<Task, Result>>& m, F& fn, const std::function<void()>& init,
               std::size_t max_tasks) {
    using Message = PoolMessage<Task, Result>;
    if (init) init();
    {
        Message ready;
        ready.kind = PoolMessageKind::ready;
        m.send_norequest(ready);
    }
    std::size_t served = 0;
    std::vector<Message> answers;
    // Answers wait to travel together while they come fast (many small
    // tasks: one write for all); once a millisecond of work has passed they
    // go at once, so the host sees slow tasks finish and keeps every worker
    // busy to the end. (The host does not need an answer per chunk to know
    // what a worker that dies was running: it retries each chunk that
    // worker held, alone.)
    constexpr auto hold_at_most = std::chrono::milliseconds(1);
    for (;;) {
        answers.clear();
        bool last = false;
        auto last_sent = std::chrono::steady_clock::now();
        for (Message& in : m.receive_available_blocking()) {
            Message& out = answers.emplace_back(answer_chunk<Task, Result>(fn, in));
            served += in.tasks.size();
            if (max_tasks != 0 && served >= max_tasks) {
                out.last = true;
                last = true;
                break;  // the chunks after it go back to the host's queue
            }
            if (const auto now = std::chrono::steady_clock::now(); now - last_sent >= hold_at_most) {
                m.send_norequest_multiple(answers);
                answers.clear();
                last_sent = now;
            }
        }
        m.send_norequest_multiple(answers);
        if (last) return 0;
    }
}

}  // namespace coproc::detail
