#include "dsv3/server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "dsv3/server/chat_output_parser.h"
#include "dsv3/server/metrics.h"
#include "dsv3/server/openai_protocol.h"
#include "dsv3/util/log.h"

namespace dsv3 {
namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The updates of a job's engine requests, handed from the engine thread to the HTTP thread.
struct UpdateQueue {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::pair<size_t, GenerationUpdate>> updates;  // (choice index, update)

  void push(size_t index, const GenerationUpdate& u) {
    std::lock_guard lock(mutex);
    updates.push_back({index, u});
    ready.notify_one();
  }
  std::pair<size_t, GenerationUpdate> pop() {
    std::unique_lock lock(mutex);
    ready.wait(lock, [&] { return !updates.empty(); });
    auto u = std::move(updates.front());
    updates.pop_front();
    return u;
  }
};

// One choice's output as it accumulates.
struct Choice {
  explicit Choice(bool reasoning_open) : parser(reasoning_open) {}
  ChatOutputParser parser;
  std::string text, content, reasoning;
  std::vector<TokenLogprob> logprobs;
  Usage usage;
  std::optional<FinishReason> finish;
  std::string error;
  Clock::time_point last_token = Clock::now();
  bool role_sent = false;
};

}  // namespace

struct HttpServer::Impl {
  Impl(Engine& e, const TokenizerConfig& c, ServerOptions o) : engine(e), chat(c), options(std::move(o)) {
    protocol.tokenizer = &engine.tokenizer();
    protocol.chat = &chat;
    protocol.vocab_size = engine.model_config().vocab_size;
    protocol.context_tokens = engine.context_tokens();
    protocol.default_max_tokens = options.default_max_tokens;
    protocol.test_hooks = options.test_hooks;
  }

  Engine& engine;
  const TokenizerConfig& chat;
  ServerOptions options;
  ProtocolContext protocol;
  Metrics metrics;
  httplib::Server server;

  void send_json(httplib::Response& res, int status, const Json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
  }
  void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = {},
                  const std::string& type = "invalid_request_error") {
    send_json(res, status, error_body(status, message, type, param));
  }

  Json parse_body(const httplib::Request& req) {
    try {
      return Json::parse(req.body);
    } catch (const Json::exception& e) {
      throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
    }
  }

  // Submits every request of `job`; their updates go to `queue` tagged with the choice index.
  std::vector<uint64_t> submit(CompletionJob& job, const std::shared_ptr<UpdateQueue>& queue) {
    std::vector<uint64_t> ids;
    try {
      for (size_t i = 0; i < job.requests.size(); ++i)
        ids.push_back(engine.submit(job.requests[i], [queue, i](const GenerationUpdate& u) { queue->push(i, u); }));
    } catch (const Error& e) {
      for (uint64_t id : ids) engine.cancel(id);
      throw ApiError(400, e.what());
    }
    return ids;
  }

  // Folds one update into its choice; returns the content and reasoning it adds.
  ChatDelta absorb(Choice& c, const GenerationUpdate& u, bool chat_job) {
    const auto now = Clock::now();
    if (!u.tokens.empty()) {
      if (u.time_to_first_token_s > 0.0) metrics.observe_time_to_first_token(u.time_to_first_token_s);
      else metrics.observe_inter_token_latency(std::chrono::duration<double>(now - c.last_token).count());
      c.last_token = now;
    }
    c.logprobs.insert(c.logprobs.end(), u.logprobs.begin(), u.logprobs.end());
    c.usage = u.usage;
    c.text += u.text;
    ChatDelta d;
    if (chat_job) d = c.parser.push(u.text);
    else d.content = u.text;
    if (u.finish) {
      c.finish = u.finish;
      c.error = u.error;
      if (chat_job) {
        const ChatDelta rest = c.parser.finish();
        d.content += rest.content;
        d.reasoning += rest.reasoning;
      }
    }
    c.content += d.content;
    c.reasoning += d.reasoning;
    return d;
  }

  Json response_envelope(const CompletionJob& job, const std::string& id, bool chunk) {
    return {{"id", id},
            {"object", job.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", unix_time()},
            {"model", job.model.empty() ? options.model_name : job.model}};
  }

  void complete(const httplib::Request& req, httplib::Response& res, bool chat_endpoint) {
    const std::string endpoint = chat_endpoint ? "/v1/chat/completions" : "/v1/completions";
    CompletionJob job = chat_endpoint ? parse_chat_request(parse_body(req), protocol)
                                      : parse_completion_request(parse_body(req), protocol);
    auto queue = std::make_shared<UpdateQueue>();
    const std::vector<uint64_t> ids = submit(job, queue);
    const std::string id = (chat_endpoint ? "chatcmpl-" : "cmpl-") + std::to_string(ids.front());
    auto choices = std::make_shared<std::vector<Choice>>();
    for (size_t i = 0; i < job.requests.size(); ++i) choices->emplace_back(job.reasoning_open);

    if (!job.stream) {
      size_t finished = 0;
      while (finished < choices->size()) {
        auto [index, update] = queue->pop();
        absorb((*choices)[index], update, job.chat);
        finished += update.finish.has_value();
      }
      for (const Choice& c : *choices)
        if (c.finish == FinishReason::Error) throw ApiError(500, "generation failed: " + c.error, "", "server_error");
      Json body = response_envelope(job, id, false);
      Json out_choices = Json::array();
      Usage total;
      for (size_t i = 0; i < choices->size(); ++i) {
        const Choice& c = (*choices)[i];
        const bool tools = !c.parser.tool_calls().empty();
        Json choice = {{"index", i}};
        if (job.chat) {
          Json message = {{"role", "assistant"}, {"content", tools && c.content.empty() ? Json(nullptr) : Json(c.content)}};
          if (!c.reasoning.empty() || job.reasoning_open) message["reasoning_content"] = c.reasoning;
          if (tools) message["tool_calls"] = tool_calls_json(c.parser.tool_calls(), "call_" + std::to_string(ids[i]) + "_");
          choice["message"] = message;
        } else {
          choice["text"] = job.echo ? job.prompt_texts[i] + c.text : c.text;
        }
        choice["logprobs"] = job.requests[i].top_logprobs >= 0 ? logprobs_json(c.logprobs, engine.tokenizer(), job.chat)
                                                                : Json(nullptr);
        choice["finish_reason"] = finish_reason_name(*c.finish, tools);
        out_choices.push_back(choice);
        total.prompt_tokens += c.usage.prompt_tokens;
        total.completion_tokens += c.usage.completion_tokens;
        total.cached_tokens += c.usage.cached_tokens;
      }
      body["choices"] = out_choices;
      body["usage"] = usage_json(total);
      send_json(res, 200, body);
      metrics.count_request(endpoint, 200);
      return;
    }

    metrics.count_request(endpoint, 200);
    auto shared_job = std::make_shared<CompletionJob>(std::move(job));
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, shared_job, queue, choices, ids, id](size_t, httplib::DataSink& sink) {
          const CompletionJob& job = *shared_job;
          auto send = [&](const Json& chunk) {
            const std::string event = "data: " + chunk.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
            return sink.write(event.data(), event.size());
          };
          auto cancel_all = [&] {
            for (uint64_t request_id : ids) engine.cancel(request_id);
          };
          if (job.echo) {
            for (size_t i = 0; i < job.prompt_texts.size(); ++i) {
              Json chunk = response_envelope(job, id, true);
              chunk["choices"] = Json::array({{{"index", i}, {"text", job.prompt_texts[i]}, {"logprobs", nullptr},
                                               {"finish_reason", nullptr}}});
              if (!send(chunk)) return cancel_all(), false;
            }
          }
          size_t finished = 0;
          Usage total;
          while (finished < choices->size()) {
            auto [index, update] = queue->pop();
            Choice& c = (*choices)[index];
            const ChatDelta d = absorb(c, update, job.chat);
            if (c.finish == FinishReason::Error) {
              send(error_body(500, "generation failed: " + c.error, "server_error", ""));
              cancel_all();
              break;
            }
            Json choice = {{"index", index}};
            const bool tools = update.finish && !c.parser.tool_calls().empty();
            if (job.chat) {
              Json delta = Json::object();
              if (!c.role_sent) delta["role"] = "assistant";
              c.role_sent = true;
              if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
              if (!d.content.empty()) delta["content"] = d.content;
              if (tools) delta["tool_calls"] = tool_calls_json(c.parser.tool_calls(), "call_" + std::to_string(ids[index]) + "_");
              choice["delta"] = delta;
            } else {
              choice["text"] = d.content;
            }
            choice["logprobs"] = job.requests[index].top_logprobs >= 0 && !update.logprobs.empty()
                                     ? logprobs_json(update.logprobs, engine.tokenizer(), job.chat)
                                     : Json(nullptr);
            choice["finish_reason"] = update.finish ? Json(finish_reason_name(*update.finish, tools)) : Json(nullptr);
            Json chunk = response_envelope(job, id, true);
            chunk["choices"] = Json::array({choice});
            if (job.include_usage) chunk["usage"] = nullptr;
            if (update.finish) {
              ++finished;
              total.prompt_tokens += c.usage.prompt_tokens;
              total.completion_tokens += c.usage.completion_tokens;
              total.cached_tokens += c.usage.cached_tokens;
            }
            if (!send(chunk)) {  // the client went away: free its pages at the next step
              cancel_all();
              return false;
            }
          }
          if (job.include_usage && finished == choices->size()) {
            Json chunk = response_envelope(job, id, true);
            chunk["choices"] = Json::array();
            chunk["usage"] = usage_json(total);
            send(chunk);
          }
          const std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
          return true;
        });
  }

  void routes() {
    server.new_task_queue = [] { return new httplib::ThreadPool(256); };
    server.set_payload_max_length(options.max_body_bytes);
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (options.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + options.api_key)
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "", "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    });
    server.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 413) send_error(res, 413, str_cat("the request body is larger than ", options.max_body_bytes, " bytes"));
      else if (res.status == 404) send_error(res, 404, "no such endpoint", "", "not_found_error");
      else send_error(res, res.status, "request failed");
    });
    auto guarded = [this](const std::string& endpoint, auto handler) {
      return [this, endpoint, handler](const httplib::Request& req, httplib::Response& res) {
        try {
          handler(req, res);
        } catch (const ApiError& e) {
          send_error(res, e.status, e.what(), e.param, e.type);
          metrics.count_request(endpoint, e.status);
        } catch (const std::exception& e) {
          send_error(res, 500, e.what(), "", "server_error");
          metrics.count_request(endpoint, 500);
        }
      };
    };
    server.Post("/v1/chat/completions",
                guarded("/v1/chat/completions", [this](const auto& req, auto& res) { complete(req, res, true); }));
    server.Post("/v1/completions", guarded("/v1/completions", [this](const auto& req, auto& res) { complete(req, res, false); }));
    server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"object", "list"},
                           {"data", Json::array({{{"id", options.model_name},
                                                  {"object", "model"},
                                                  {"created", unix_time()},
                                                  {"owned_by", "dsv3"},
                                                  {"max_model_len", protocol.context_tokens},
                                                  {"random_weights", options.random_weights}}})}});
    });
    server.Get("/health", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, Json::object()); });
    server.Get("/version", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"version", "0.1.0"}}); });
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(engine.stats()), "text/plain; version=0.0.4");
    });
    server.Post("/tokenize", guarded("/tokenize", [this](const auto& req, auto& res) {
      const Json body = parse_body(req);
      std::string text;
      if (body.contains("messages")) {
        Json request = {{"messages", body["messages"]}, {"add_generation_prompt", body.value("add_generation_prompt", true)}};
        if (body.contains("tools")) request["tools"] = body["tools"];
        try {
          text = render_chat(chat, request);
        } catch (const Error& e) {
          throw ApiError(400, e.what(), "messages");
        }
      } else if (body.contains("prompt") && body["prompt"].is_string()) {
        text = body["prompt"].get<std::string>();
      } else {
        throw ApiError(400, "give 'prompt' (a string) or 'messages'", "prompt");
      }
      std::vector<int32_t> ids;
      try {
        ids = engine.tokenizer().encode(text, true);
      } catch (const Error& e) {
        throw ApiError(400, e.what(), "prompt");
      }
      send_json(res, 200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", protocol.context_tokens}});
    }));
    server.Post("/detokenize", guarded("/detokenize", [this](const auto& req, auto& res) {
      const Json body = parse_body(req);
      if (!body.contains("tokens") || !body["tokens"].is_array() ||
          !std::all_of(body["tokens"].begin(), body["tokens"].end(), [](const Json& t) { return t.is_number_integer(); }))
        throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
      try {
        send_json(res, 200, {{"prompt", engine.tokenizer().decode(body["tokens"].get<std::vector<int32_t>>())}});
      } catch (const Error& e) {
        throw ApiError(400, e.what(), "tokens");
      }
    }));
  }
};

HttpServer::HttpServer(Engine& engine, const TokenizerConfig& chat, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, chat, std::move(options))) {
  impl_->routes();
}

HttpServer::~HttpServer() = default;

void HttpServer::run() {
  ServerOptions& o = impl_->options;
  if (o.port == 0) {  // any free port; the log line says which
    o.port = impl_->server.bind_to_any_port(o.host.c_str());
    if (o.port < 0) fail("cannot listen on ", o.host);
  } else if (!impl_->server.bind_to_port(o.host.c_str(), o.port)) {
    fail("cannot listen on ", o.host, ":", o.port, " (in use, or not an address of this machine)");
  }
  log_info("serving ", impl_->options.model_name, impl_->options.random_weights ? " (random weights)" : "", " on http://",
           impl_->options.host, ":", impl_->options.port);
  impl_->server.listen_after_bind();
}

void HttpServer::stop() { impl_->server.stop(); }

}  // namespace dsv3
