// `dsv3 run -p TEXT` streams one answer; `dsv3 run --input-file F` answers every line of F as its own
// conversation, all in one batch, and prints one JSON object a line, in the order of the prompts.
#include <cstdio>
#include <fstream>
#include <future>

#include "cli/command.h"
#include "cli/engine_setup.h"
#include "dsv3/util/error.h"
#include "dsv3/util/log.h"

namespace dsv3::cli {
namespace {

const char* finish_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "?";
}

nlohmann::ordered_json conversation(const Args& args, const std::string& prompt) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (auto system = args.get("system")) messages.push_back({{"role", "system"}, {"content", *system}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  return messages;
}

int run_run(const Args& args) {
  std::vector<std::string> prompts;
  if (auto prompt = args.get("prompt")) prompts.push_back(*prompt);
  const bool from_file = args.has("input-file");
  if (from_file) {
    std::ifstream in(*args.get("input-file"));
    if (!in) fail("cannot read --input-file ", *args.get("input-file"));
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) fail("give a prompt with -p TEXT or --input-file F");
  if (args.has("prompt") && from_file) fail("give either -p or --input-file, not both");

  const GenerationRequest defaults = request_defaults(args);
  ServingModel model = load_serving_model(args);
  if (model.random_weights) log_warn("model ", model.name, " has random weights: its answers are noise");

  struct Answer {
    std::string text;
    std::string finish;
    std::string error;
  };
  std::vector<std::promise<Answer>> done(prompts.size());
  std::vector<std::shared_ptr<Answer>> answers;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest request = defaults;
    request.prompt = encode_conversation(model, conversation(args, prompts[i]));
    auto answer = std::make_shared<Answer>();
    answers.push_back(answer);
    const bool stream = !from_file;
    model.engine->submit(std::move(request), [&, i, answer, stream](const GenerationUpdate& u) {
      answer->text += u.text;
      if (stream) {
        std::fwrite(u.text.data(), 1, u.text.size(), stdout);
        std::fflush(stdout);
      }
      if (u.finish) {
        answer->finish = finish_name(*u.finish);
        answer->error = u.error;
        done[i].set_value(*answer);
      }
    });
  }
  int status = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Answer a = done[i].get_future().get();
    if (!a.error.empty()) {
      std::fprintf(stderr, "dsv3 run: error: %s\n", a.error.c_str());
      status = 1;
    }
    if (from_file) {
      const nlohmann::json line = {{"prompt", prompts[i]}, {"text", a.text}, {"finish_reason", a.finish}};
      std::printf("%s\n", line.dump().c_str());
    } else {
      std::printf("\n");
    }
  }
  return status;
}

std::vector<FlagSpec> flags() {
  std::vector<FlagSpec> f = serving_flags();
  f.push_back({"prompt", "p", true, "the user message to answer"});
  f.push_back({"input-file", "", true, "a file of prompts, one a line: answers as JSON lines, in order"});
  return f;
}

const CommandRegistration registration{{"run", "answer one prompt, or every line of a file in one batch", flags(), run_run}};

}  // namespace
}  // namespace dsv3::cli
