// `dsv3 chat`: an interactive conversation in the terminal. Answers stream as they are generated;
// the conversation is kept between turns; /reset starts over, /exit (or end of input) leaves, and
// Ctrl-C stops the answer being written.
#include <csignal>
#include <cstdio>
#include <future>
#include <iostream>

#include "cli/command.h"
#include "cli/engine_setup.h"
#include "dsv3/util/log.h"

namespace dsv3::cli {
namespace {

volatile std::sig_atomic_t interrupted = 0;

void on_interrupt(int) { interrupted = 1; }

int run_chat(const Args& args) {
  const GenerationRequest defaults = request_defaults(args);
  ServingModel model = load_serving_model(args);
  std::printf("dsv3 chat: %s%s. /reset starts over, /exit leaves, Ctrl-C stops an answer.\n", model.name.c_str(),
              model.random_weights ? " (random weights: its answers are noise)" : "");

  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);

  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (auto system = args.get("system")) messages.push_back({{"role", "system"}, {"content", *system}});
  const nlohmann::ordered_json initial = messages;
  for (;;) {
    std::printf("> ");
    std::fflush(stdout);
    std::string line;
    interrupted = 0;
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      messages = initial;
      std::printf("(conversation cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});

    GenerationRequest request = defaults;
    request.prompt = encode_conversation(model, messages);
    auto reply = std::make_shared<std::string>();
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    const uint64_t id = model.engine->submit(std::move(request), [reply, done](const GenerationUpdate& u) {
      *reply += u.text;
      std::fwrite(u.text.data(), 1, u.text.size(), stdout);
      std::fflush(stdout);
      if (u.finish) done->set_value();
    });
    bool cancelled = false;
    while (finished.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (interrupted && !cancelled) {
        model.engine->cancel(id);
        cancelled = true;
      }
    }
    std::printf(cancelled ? " [stopped]\n" : "\n");
    messages.push_back({{"role", "assistant"}, {"content", *reply}});
  }
  std::printf("\n");
  return 0;
}

const CommandRegistration registration{{"chat", "chat with the model in the terminal", serving_flags(), run_chat}};

}  // namespace
}  // namespace dsv3::cli
