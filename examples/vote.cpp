// The distributed vote (the bus): a group process publishes a question to N
// direct channels, one per worker process; each worker answers on its own
// channel; the group collects the answers and prints the tally.
//
// Two buses: questions flow group -> workers (the group's publisher binds),
// answers flow workers -> group (the group's subscriber binds and every
// worker's publisher connects to it). Readiness is a handshake on both: no
// sleeps, no lost messages.
#include <coproc/bus.hpp>
#include <coproc/coproc.hpp>
#include <fmt/format.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Messenger = coproc::MultiMessenger<int>;

constexpr int voters = 5;
const std::vector<std::string> options{"pizza", "sushi", "tacos"};

// One voter: reads its direct channel, answers on its own answer channel.
void voter(Messenger&, int id, const std::string& questions, const std::string& answers) {
    auto inbox = coproc::Bus(questions).subscribe(fmt::format("voter-{}", id));
    auto outbox = coproc::Bus(answers).publish(/*bind=*/false);
    outbox.start();
    outbox.wait_for_subscribers(voters + 1, 10s);  // the group listens to every answer channel
    inbox.wait_ready(10s);                         // the group can reach us
    auto question = inbox.get(10s);
    if (!question) return;
    const auto& choices = question->message["options"];
    // Each voter has its own (deterministic) taste.
    const std::string choice = choices[static_cast<std::size_t>(id * 7 % 3 == 2 ? 1 : id % 2)];
    outbox.put(fmt::format("answer-{}", id), coproc::Json{{"voter", id}, {"choice", choice}});
    outbox.stop();  // delivered before the worker exits
}

int main() {
    const std::string questions = fmt::format("ipc:///tmp/coproc-vote-{}-questions", ::getpid());
    const std::string answers = fmt::format("ipc:///tmp/coproc-vote-{}-answers", ::getpid());

    // Start the voters first: nothing of the group's ZeroMQ state is forked.
    std::vector<coproc::WorkerResource<Messenger>> workers;
    workers.reserve(voters);
    for (int id = 0; id < voters; ++id) workers.emplace_back(voter, id, questions, answers);

    std::vector<std::string> answer_channels;
    for (int id = 0; id < voters; ++id) answer_channels.push_back(fmt::format("answer-{}", id));
    auto ballot_box = coproc::Bus(answers).subscribe(answer_channels, /*bind=*/true);
    auto group = coproc::Bus(questions).publish();
    group.start();
    group.wait_for_subscribers(2 * voters, 10s);  // each voter: its channel + its readiness check

    const coproc::Json question{{"question", "What's for lunch?"}, {"options", options}};
    fmt::print("group asks: {}\n", question["question"].get<std::string>());
    for (int id = 0; id < voters; ++id) group.put(fmt::format("voter-{}", id), question);

    std::map<int, std::string> ballots;
    while (ballots.size() < static_cast<std::size_t>(voters)) {
        auto answer = ballot_box.get(10s);
        if (!answer) break;
        ballots[answer->message["voter"].get<int>()] = answer->message["choice"].get<std::string>();
    }
    std::map<std::string, int> tally;
    for (const auto& [id, choice] : ballots) {
        fmt::print("voter {} answered on {}: {}\n", id, answer_channels[static_cast<std::size_t>(id)], choice);
        ++tally[choice];
    }
    fmt::print("tally:");
    for (const auto& option : options) fmt::print(" {}={}", option, tally[option]);
    fmt::print(" ({} of {} voted)\n", ballots.size(), voters);
    group.stop();
    for (auto& w : workers) (void)w.join(10s);
}
