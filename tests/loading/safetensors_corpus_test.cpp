// Runs every file of the fuzzer's seed corpus (tests/fixtures/safetensors_corpus/, crashers included)
// through the header parser, so that CI checks the corpus without libFuzzer: each file either parses
// or is refused with a dsv3::Error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "dsv3/model/safetensors.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

const std::filesystem::path kCorpus = std::filesystem::path(DSV3_FIXTURES_DIR) / "safetensors_corpus";

TEST(SafetensorsCorpus, EveryFileParsesOrIsRefusedWithAnError) {
  size_t n_files = 0, n_parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ++n_files;
    try {
      for (const TensorView& t : parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                                   entry.path().string())) {
        // Every view lies inside the input.
        EXPECT_GE(t.data, reinterpret_cast<const uint8_t*>(bytes.data())) << entry.path();
        EXPECT_LE(t.data + t.n_bytes, reinterpret_cast<const uint8_t*>(bytes.data()) + bytes.size()) << entry.path();
      }
      ++n_parsed;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(entry.path().string()), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(n_files, 10u);
  EXPECT_GT(n_parsed, 0u);
  EXPECT_LT(n_parsed, n_files);
}

}  // namespace
}  // namespace dsv3
