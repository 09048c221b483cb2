// `dsv3 serve [-m DIR] [--host 127.0.0.1] [--port 8000]`: the OpenAI-compatible server. SIGTERM or
// SIGINT stops accepting, cancels what is in flight and exits 0.
#include <atomic>
#include <csignal>
#include <thread>

#include "cli/command.h"
#include "cli/engine_setup.h"
#include "cli/model_options.h"
#include "dsv3/server/http_server.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {
namespace {

volatile std::sig_atomic_t stop_requested = 0;

void on_stop_signal(int) { stop_requested = 1; }

int run_serve(const Args& args) {
  ServerOptions options;
  options.host = args.get_or("host", "127.0.0.1");
  const int64_t port = args.get_int("port", 8000);
  if (port < 0 || port > 65535) fail("flag --port must be in 0..65535, got ", port);
  options.port = int(port);
  options.api_key = args.get_or("api-key", "");
  const int64_t max_body = args.get_int("max-body-bytes", 8 << 20);
  if (max_body <= 0) fail("flag --max-body-bytes must be positive");
  options.max_body_bytes = size_t(max_body);
  options.test_hooks = args.has("test-hooks");
  options.default_max_tokens = args.get_int("default-max-tokens", 1024);
  if (options.default_max_tokens < 1) fail("flag --default-max-tokens must be at least 1");

  ServingModel model = load_serving_model(args);
  options.model_name = args.get_or("served-model-name", model.name);
  options.random_weights = model.random_weights;
  HttpServer server(*model.engine, model.chat, options);

  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::atomic<bool> serving{true};
  std::thread watcher([&] {
    while (serving && !stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    model.engine->shutdown();  // in-flight requests finish as cancelled, their streams close
    server.stop();
  });
  try {
    server.run();
  } catch (...) {
    serving = false;
    watcher.join();
    throw;
  }
  serving = false;
  watcher.join();
  return 0;
}

std::vector<FlagSpec> flags() {
  std::vector<FlagSpec> f = model_flags();
  f.push_back({"host", "", true, "address to listen on (default 127.0.0.1)"});
  f.push_back({"port", "", true, "port (default 8000)"});
  f.push_back({"api-key", "", true, "require 'Authorization: Bearer KEY' on /v1/ endpoints"});
  f.push_back({"max-body-bytes", "", true, "largest request body accepted (default 8 MiB)"});
  f.push_back({"served-model-name", "", true, "the model name /v1/models reports (default: what -m says)"});
  f.push_back({"default-max-tokens", "", true, "max_tokens when a request gives none (default 1024)"});
  f.push_back({"test-hooks", "", false, "accept 'forced_tokens' in requests (for tests)"});
  return f;
}

const CommandRegistration registration{{"serve", "OpenAI-compatible HTTP server", flags(), run_serve}};

}  // namespace
}  // namespace dsv3::cli
