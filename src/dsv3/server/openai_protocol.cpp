#include "dsv3/server/openai_protocol.h"

#include <cmath>

namespace dsv3 {
namespace {

// Reads an optional field of one JSON type, or says which field is wrong.
class Fields {
 public:
  explicit Fields(const Json& body) : body_(body) {
    if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  }
  bool has(const char* name) const { return body_.contains(name) && !body_[name].is_null(); }
  const Json& at(const char* name) const { return body_[name]; }
  double number(const char* name, double fallback, double min, double max) const {
    if (!has(name)) return fallback;
    if (!at(name).is_number()) throw ApiError(400, std::string("'") + name + "' must be a number", name);
    const double v = at(name).get<double>();
    if (!(v >= min && v <= max))
      throw ApiError(400, str_cat("'", name, "' must be between ", min, " and ", max, ", got ", v), name);
    return v;
  }
  int64_t integer(const char* name, int64_t fallback, int64_t min, int64_t max) const {
    if (!has(name)) return fallback;
    if (!at(name).is_number_integer()) throw ApiError(400, std::string("'") + name + "' must be an integer", name);
    const int64_t v = at(name).get<int64_t>();
    if (v < min || v > max) throw ApiError(400, str_cat("'", name, "' must be between ", min, " and ", max, ", got ", v), name);
    return v;
  }
  bool boolean(const char* name, bool fallback) const {
    if (!has(name)) return fallback;
    if (!at(name).is_boolean()) throw ApiError(400, std::string("'") + name + "' must be a boolean", name);
    return at(name).get<bool>();
  }
  std::string string(const char* name, const std::string& fallback) const {
    if (!has(name)) return fallback;
    if (!at(name).is_string()) throw ApiError(400, std::string("'") + name + "' must be a string", name);
    return at(name).get<std::string>();
  }

 private:
  const Json& body_;
};

// The fields both endpoints share: sampling, stopping, streaming.
GenerationRequest common_fields(const Fields& f, CompletionJob& job, const ProtocolContext& context) {
  GenerationRequest r;
  job.model = f.string("model", "");
  job.stream = f.boolean("stream", false);
  if (f.has("stream_options")) {
    if (!f.at("stream_options").is_object()) throw ApiError(400, "'stream_options' must be an object", "stream_options");
    const Json& o = f.at("stream_options");
    if (o.contains("include_usage") && !o["include_usage"].is_boolean())
      throw ApiError(400, "'stream_options.include_usage' must be a boolean", "stream_options");
    job.include_usage = o.value("include_usage", false);
  }
  if (f.integer("n", 1, 1, 1) != 1) throw ApiError(400, "only n = 1 is supported", "n");
  r.sampling.temperature = float(f.number("temperature", 1.0, 0.0, 2.0));
  r.sampling.top_p = float(f.number("top_p", 1.0, 1e-9, 1.0));
  const int64_t top_k = f.integer("top_k", 0, -1, int64_t(1) << 31);
  r.sampling.top_k = top_k < 0 ? 0 : top_k;
  r.sampling.min_p = float(f.number("min_p", 0.0, 0.0, 1.0));
  r.sampling.presence_penalty = float(f.number("presence_penalty", 0.0, -2.0, 2.0));
  r.sampling.frequency_penalty = float(f.number("frequency_penalty", 0.0, -2.0, 2.0));
  r.sampling.repetition_penalty = float(f.number("repetition_penalty", 1.0, 1e-6, 1e6));
  if (f.has("seed")) r.sampling.seed = uint64_t(f.integer("seed", 0, INT64_MIN, INT64_MAX));
  const char* max_field = f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.stop.max_tokens = f.integer(max_field, 0, 1, context.context_tokens);
  if (f.has("stop")) {
    const Json& stop = f.at("stop");
    if (stop.is_string()) {
      r.stop.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array() && std::all_of(stop.begin(), stop.end(), [](const Json& s) { return s.is_string(); })) {
      for (const auto& s : stop) r.stop.stop.push_back(s.get<std::string>());
    } else {
      throw ApiError(400, "'stop' must be a string or a list of strings", "stop");
    }
  }
  if (f.has("stop_token_ids")) {
    const Json& ids = f.at("stop_token_ids");
    if (!ids.is_array() || !std::all_of(ids.begin(), ids.end(), [](const Json& i) { return i.is_number_integer(); }))
      throw ApiError(400, "'stop_token_ids' must be a list of integers", "stop_token_ids");
    for (const auto& i : ids) r.stop.stop_token_ids.push_back(i.get<int32_t>());
  }
  r.stop.ignore_eos = f.boolean("ignore_eos", false);
  if (f.has("forced_tokens")) {
    if (!context.test_hooks) throw ApiError(400, "'forced_tokens' needs a server started with --test-hooks", "forced_tokens");
    for (const auto& t : f.at("forced_tokens")) r.forced_tokens.push_back(t.get<int32_t>());
  }
  return r;
}

// Fills max_tokens when the client left it out, and checks the prompt against the context.
void finish_request(GenerationRequest& r, const ProtocolContext& context) {
  const int64_t room = context.context_tokens - int64_t(r.prompt.size());
  if (room < 1)
    throw ApiError(400, str_cat("the prompt is ", r.prompt.size(), " tokens; this model's context is ", context.context_tokens,
                                " tokens"), "messages");
  if (r.stop.max_tokens == 0) r.stop.max_tokens = std::min(room, context.default_max_tokens);
  if (r.stop.max_tokens > room)
    throw ApiError(400, str_cat("the prompt (", r.prompt.size(), " tokens) plus max_tokens (", r.stop.max_tokens,
                                ") exceeds this model's context of ", context.context_tokens, " tokens"), "max_tokens");
}

// The text of a message's content: a string, null, or a list of {"type": "text", "text"} parts.
Json content_text(const Json& content, size_t index) {
  if (content.is_string() || content.is_null()) return content;
  if (content.is_array()) {
    std::string text;
    for (const auto& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
        throw ApiError(400, str_cat("messages[", index, "].content: only text parts are supported"), "messages");
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw ApiError(400, str_cat("messages[", index, "].content must be a string, null or a list of text parts"), "messages");
}

}  // namespace

Json error_body(int status, const std::string& message, const std::string& type, const std::string& param) {
  return {{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? Json(nullptr) : Json(param)},
                     {"code", status}}}};
}

CompletionJob parse_chat_request(const Json& body, const ProtocolContext& context) {
  Fields f(body);
  CompletionJob job;
  job.chat = true;
  GenerationRequest r = common_fields(f, job, context);
  if (f.boolean("logprobs", false)) r.top_logprobs = int32_t(f.integer("top_logprobs", 0, 0, 20));
  if (!f.has("messages") || !f.at("messages").is_array() || f.at("messages").empty())
    throw ApiError(400, "'messages' must be a non-empty list", "messages");
  Json messages = Json::array();
  for (size_t i = 0; i < f.at("messages").size(); ++i) {
    const Json& m = f.at("messages")[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw ApiError(400, str_cat("messages[", i, "] must be an object with a string 'role'"), "messages");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      throw ApiError(400, str_cat("messages[", i, "].role '", role, "' is not one of system, user, assistant, tool"), "messages");
    Json message = m;
    message["role"] = role == "developer" ? "system" : role;
    message["content"] = content_text(m.contains("content") ? m["content"] : Json(nullptr), i);
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      if (!m["tool_calls"].is_array()) throw ApiError(400, str_cat("messages[", i, "].tool_calls must be a list"), "messages");
      for (auto& call : message["tool_calls"]) {  // templates expect arguments as a string
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
          throw ApiError(400, str_cat("messages[", i, "].tool_calls entries need a 'function' object"), "messages");
        if (!call.contains("type")) call["type"] = "function";
        if (call["function"].contains("arguments") && !call["function"]["arguments"].is_string())
          call["function"]["arguments"] = call["function"]["arguments"].dump();
      }
    } else {
      message.erase("tool_calls");
    }
    messages.push_back(std::move(message));
  }
  Json request = {{"messages", messages}, {"add_generation_prompt", true}};
  if (f.has("tools")) {
    if (!f.at("tools").is_array()) throw ApiError(400, "'tools' must be a list", "tools");
    request["tools"] = f.at("tools");
  }
  std::string text;
  try {
    text = render_chat(*context.chat, request);
  } catch (const Error& e) {
    throw ApiError(400, std::string("the chat template could not render these messages: ") + e.what(), "messages");
  }
  job.reasoning_open = text.size() >= 8 && text.compare(text.size() - 8, 8, "<think>\n") == 0;
  r.prompt = context.tokenizer->encode(text, /*allow_special=*/true);
  finish_request(r, context);
  job.requests.push_back(std::move(r));
  job.prompt_texts.push_back(text);
  return job;
}

CompletionJob parse_completion_request(const Json& body, const ProtocolContext& context) {
  Fields f(body);
  CompletionJob job;
  const GenerationRequest common = common_fields(f, job, context);
  job.echo = f.boolean("echo", false);
  const int64_t logprobs = f.integer("logprobs", -1, 0, 20);
  if (!f.has("prompt")) throw ApiError(400, "'prompt' is required", "prompt");
  const Json& prompt = f.at("prompt");
  std::vector<Json> prompts;
  if (prompt.is_string() || (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer())) {
    prompts.push_back(prompt);
  } else if (prompt.is_array() && !prompt.empty()) {
    prompts.assign(prompt.begin(), prompt.end());
  } else {
    throw ApiError(400, "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists", "prompt");
  }
  for (const Json& p : prompts) {
    GenerationRequest r = common;
    r.top_logprobs = int32_t(logprobs);
    if (p.is_string()) {
      try {
        r.prompt = context.tokenizer->encode(p.get<std::string>(), /*allow_special=*/true);
      } catch (const Error& e) {
        throw ApiError(400, std::string("'prompt': ") + e.what(), "prompt");
      }
      job.prompt_texts.push_back(p.get<std::string>());
    } else if (p.is_array() && std::all_of(p.begin(), p.end(), [](const Json& t) { return t.is_number_integer(); })) {
      for (const auto& t : p) {
        const int64_t id = t.get<int64_t>();
        if (id < 0 || id >= context.vocab_size)
          throw ApiError(400, str_cat("'prompt' token id ", id, " is outside the vocabulary (", context.vocab_size, ")"), "prompt");
        r.prompt.push_back(int32_t(id));
      }
      job.prompt_texts.push_back(context.tokenizer->decode(r.prompt));
    } else {
      throw ApiError(400, "every prompt must be a string or a list of token ids", "prompt");
    }
    if (r.prompt.empty()) throw ApiError(400, "'prompt' is empty", "prompt");
    finish_request(r, context);
    job.requests.push_back(std::move(r));
  }
  return job;
}

const char* finish_reason_name(FinishReason reason, bool tool_calls) {
  switch (reason) {
    case FinishReason::Stop: return tool_calls ? "tool_calls" : "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "abort";
    case FinishReason::Error: return "error";
  }
  return "stop";
}

Json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

Json tool_calls_json(const std::vector<ToolCall>& calls, const std::string& id_prefix) {
  Json out = Json::array();
  for (size_t i = 0; i < calls.size(); ++i)
    out.push_back({{"index", i},
                   {"id", id_prefix + std::to_string(i)},
                   {"type", calls[i].type},
                   {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}});
  return out;
}

Json logprobs_json(const std::vector<TokenLogprob>& logprobs, const Tokenizer& tokenizer, bool chat) {
  auto text_of = [&](int32_t id) {
    try {
      return tokenizer.decode(std::vector<int32_t>{id});
    } catch (const Error&) {
      return std::string();
    }
  };
  if (chat) {
    Json content = Json::array();
    for (const auto& lp : logprobs) {
      Json top = Json::array();
      for (const auto& [id, p] : lp.top) top.push_back({{"token", text_of(id)}, {"logprob", p}});
      content.push_back({{"token", text_of(lp.token)}, {"logprob", lp.logprob}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array();
  for (const auto& lp : logprobs) {
    tokens.push_back(text_of(lp.token));
    token_logprobs.push_back(lp.logprob);
    Json t = Json::object();
    for (const auto& [id, p] : lp.top) t[text_of(id)] = p;
    top.push_back(t);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}};
}

}  // namespace dsv3
