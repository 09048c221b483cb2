// The OpenAI API's requests and responses, mapped to and from the engine's: validation of every
// field a client sends (400 with a message naming it), chat messages rendered through the model's
// chat template, and the JSON of responses and stream chunks.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/engine/request.h"
#include "dsv3/server/chat_output_parser.h"
#include "dsv3/tokenizer/chat_template.h"
#include "dsv3/tokenizer/tokenizer.h"
#include "dsv3/util/error.h"

namespace dsv3 {

using Json = nlohmann::ordered_json;

// An error the client caused: sent as {"error": {"message", "type", "param", "code"}} with `status`.
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message, std::string param = {}, std::string type = "invalid_request_error")
      : Error(message), status(status), param(std::move(param)), type(std::move(type)) {}
  int status;
  std::string param;
  std::string type;
};

Json error_body(int status, const std::string& message, const std::string& type, const std::string& param);

// What the server needs to know of the model to read a request.
struct ProtocolContext {
  const Tokenizer* tokenizer = nullptr;
  const TokenizerConfig* chat = nullptr;
  int64_t vocab_size = 0;
  int64_t context_tokens = 0;      // prompt plus completion at most
  int64_t default_max_tokens = 1024;
  bool test_hooks = false;         // accept "forced_tokens"
};

// One request of /v1/chat/completions or /v1/completions, read and checked.
struct CompletionJob {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  bool reasoning_open = false;            // chat: the prompt ends inside a <think> block
  std::string model;
  std::vector<GenerationRequest> requests;  // one a prompt (chat: one)
  std::vector<std::string> prompt_texts;    // for echo
};

CompletionJob parse_chat_request(const Json& body, const ProtocolContext& context);
CompletionJob parse_completion_request(const Json& body, const ProtocolContext& context);

const char* finish_reason_name(FinishReason reason, bool tool_calls);
Json usage_json(const Usage& usage);
Json tool_calls_json(const std::vector<ToolCall>& calls, const std::string& id_prefix);
Json logprobs_json(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer, bool chat);

}  // namespace dsv3
