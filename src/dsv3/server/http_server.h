// The OpenAI-compatible HTTP server over an Engine (cpp-httplib): /v1/chat/completions and
// /v1/completions (streamed over SSE or not), /v1/models, /health, /version, /tokenize,
// /detokenize and /metrics. Each request's errors are its own: the server keeps serving.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dsv3/engine/engine.h"
#include "dsv3/tokenizer/chat_template.h"

namespace dsv3 {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;              // empty: no authentication
  size_t max_body_bytes = 8 << 20;  // larger bodies get 413
  std::string model_name;           // what /v1/models lists
  bool random_weights = false;      // the demo or a preset: said in /v1/models
  bool test_hooks = false;          // accept "forced_tokens" in requests
  int64_t default_max_tokens = 1024;
};

class HttpServer {
 public:
  HttpServer(Engine& engine, const TokenizerConfig& chat, ServerOptions options);
  ~HttpServer();
  // Binds and serves until stop(); throws dsv3::Error when the address cannot be bound.
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3
