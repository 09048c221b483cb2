// Shared by the tokenizer tests: the fixture files under tests/fixtures/tokenizer/ and the real
// DeepSeek-V3 tokenizer, loaded once.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/tokenizer.h"
#include "dsv3/util/error.h"

namespace dsv3::test {

inline std::filesystem::path tokenizer_fixtures() {
  return std::filesystem::path(DSV3_FIXTURES_DIR) / "tokenizer";
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(read_file(path));
}

inline const Tokenizer& deepseek_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::load(DSV3_TOKENIZER_DIR);
  return tokenizer;
}

// A name gtest accepts as a test-parameter name: letters, digits and '_' only.
inline std::string gtest_name(const std::string& text, size_t index) {
  std::string name = "case" + std::to_string(index) + "_";
  for (char c : text.substr(0, 24))
    name += std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 128 ? c : '_';
  return name;
}

}  // namespace dsv3::test
