// The transformers-made fixture models (tests/fixtures/models/*, made by
// tools/reference/make_fixtures.py) and what their tests share: loading one on a backend, reading
// its expected logits, and the relative L2 distance they are judged by.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/backend/backend.h"
#include "dsv3/model/deepseek_model.h"
#include "dsv3/model/model_source.h"
#include "support/relative_l2.h"

namespace dsv3 {

namespace fs = std::filesystem;

inline std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  const fs::path root = fs::path(DSV3_FIXTURES_DIR) / "models";
  if (fs::exists(root))
    for (const auto& entry : fs::directory_iterator(root))
      if (fs::exists(entry.path() / "expected.json")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Fixture {
  fs::path dir;
  nlohmann::json expected;
  std::unique_ptr<DeepseekModel> model;
};

inline Fixture load_fixture(const std::string& name, const std::string& device, const BackendOptions& options = {}) {
  Fixture f;
  f.dir = fs::path(DSV3_FIXTURES_DIR) / "models" / name;
  std::ifstream in(f.dir / "expected.json");
  f.expected = nlohmann::json::parse(in);
  ModelSource source = open_model_source(f.dir.string(), "");
  f.model = std::make_unique<DeepseekModel>(source.config, source.tensors, make_backend(device, options), 4096);
  return f;
}

inline std::vector<float> read_floats(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v(fs::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return v;
}

using testing::relative_l2;

}  // namespace dsv3
