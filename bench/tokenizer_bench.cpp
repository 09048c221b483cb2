// bench_tokenizer: single-threaded encode throughput of dsv3's Tokenizer, one line of JSON per
// document. bench/tokenizer_bench.py runs it beside the `tokenizers` library on the same files.
//
//   bench_tokenizer TOKENIZER_DIR FILE... [--min-seconds S]
//
// Each file is encoded repeatedly (at least 3 times and for at least S seconds, default 0.5);
// the first encode also fills the word cache, as a warm server's would be. MB is 10^6 bytes of
// UTF-8 input.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/tokenizer.h"

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_tokenizer TOKENIZER_DIR FILE... [--min-seconds S]\n");
    return 2;
  }
  double min_seconds = 0.5;
  std::vector<std::filesystem::path> files;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--min-seconds" && i + 1 < argc)
      min_seconds = std::stod(argv[++i]);
    else
      files.emplace_back(argv[i]);
  }
  try {
    const auto load_start = std::chrono::steady_clock::now();
    const dsv3::Tokenizer tokenizer = dsv3::Tokenizer::load(argv[1]);
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    std::printf("%s\n", nlohmann::json({{"load_seconds", load_s}}).dump().c_str());
    for (const auto& file : files) {
      const std::string text = read_file(file);
      size_t n_tokens = 0;
      int iterations = 0;
      const auto start = std::chrono::steady_clock::now();
      double elapsed = 0;
      while (iterations < 3 || elapsed < min_seconds) {
        n_tokens = tokenizer.encode(text).size();
        ++iterations;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      const double seconds = elapsed / iterations;
      nlohmann::json line = {{"doc", file.stem().string()},        {"bytes", text.size()},
                             {"tokens", n_tokens},                  {"iterations", iterations},
                             {"seconds_per_encode", seconds},
                             {"mb_per_s", seconds > 0 ? text.size() / seconds / 1e6 : 0.0}};
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
