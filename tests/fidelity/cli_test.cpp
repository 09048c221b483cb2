// `dsv3 logits` and `dsv3 generate` on a transformers fixture, run as a user runs them, and the
// one-line errors for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/run_dsv3.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
const fs::path kFixture = fs::path(DSV3_FIXTURES_DIR) / "models" / "v3_fp8";

std::string id_list(const nlohmann::json& ids) {
  std::string s;
  for (const auto& id : ids) s += (s.empty() ? "" : ",") + std::to_string(id.get<int>());
  return s;
}

TEST(Cli, LogitsWritesEveryPositionAsTransformersDoes) {
  const auto expected = nlohmann::json::parse(test::slurp(kFixture / "expected.json"));
  const fs::path out = fs::temp_directory_path() / "dsv3_cli_logits.bin";
  const auto run = test::run_dsv3("logits -m " + kFixture.string() + " --ids " + id_list(expected["ids"]) +
                                  " --out " + out.string() + " --device cpu");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string ours = test::slurp(out), reference = test::slurp(kFixture / "logits.bin");
  ASSERT_EQ(ours.size(), reference.size());
  const auto* a = reinterpret_cast<const float*>(ours.data());
  const auto* b = reinterpret_cast<const float*>(reference.data());
  double diff = 0, ref = 0;
  for (size_t i = 0; i < ours.size() / 4; ++i) {
    diff += double(a[i] - b[i]) * double(a[i] - b[i]);
    ref += double(b[i]) * double(b[i]);
  }
  EXPECT_LE(std::sqrt(diff / ref), 1e-3);
  fs::remove(out);
}

TEST(Cli, GeneratePrintsTheGreedyIdsAsAJsonArray) {
  const auto expected = nlohmann::json::parse(test::slurp(kFixture / "expected.json"));
  const auto run = test::run_dsv3("generate -m " + kFixture.string() + " --ids " +
                                  id_list(expected["greedy"]["prompt"]) + " -n 8 --temperature 0 --ignore-eos");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto tokens = expected["greedy"]["tokens"];
  EXPECT_EQ(nlohmann::json::parse(run.out), nlohmann::json(std::vector<int>(tokens.begin(), tokens.begin() + 8)));
}

// Sampled generation repeats for one seed, cut by top_p or by top_k (both drawn by the backend), and
// a different seed draws differently.
TEST(Cli, SeededSamplingRepeats) {
  const std::string base = "generate -m " + kFixture.string() + " --ids 1,2,3 -n 12 --ignore-eos --temperature 1.5";
  for (const std::string& cut : {std::string(" --top-p 0.9"), std::string(" --top-k 20")}) {
    const auto first = test::run_dsv3(base + cut + " --seed 4"), again = test::run_dsv3(base + cut + " --seed 4"),
               other = test::run_dsv3(base + cut + " --seed 5");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_EQ(first.out, again.out) << cut;
    EXPECT_NE(first.out, other.out) << cut;
    EXPECT_EQ(nlohmann::json::parse(first.out).size(), 12u) << cut;
  }
}

TEST(Cli, BadInputEndsWithAOneLineErrorAndANonZeroExit) {
  const fs::path broken = fs::temp_directory_path() / "dsv3_cli_broken_model";
  fs::create_directories(broken);
  std::ofstream(broken / "config.json") << "{\"model_type\": \"deepseek_v3\", ";  // truncated JSON
  for (const std::string& args : std::vector<std::string>{"logits -m /nonexistent/model --ids 1 --out /tmp/x",
                                  "logits -m " + broken.string() + " --ids 1 --out /tmp/x",
                                  "generate -m " + kFixture.string() + " --ids 1,abc", "generate --bogus-flag 1",
                                  "generate -m " + kFixture.string() + " --ids 99999",
                                  "generate -m " + kFixture.string() + " --ids 1 --device cpu --fp8-activations"}) {
    const auto run = test::run_dsv3(args);
    EXPECT_NE(run.exit_code, 0) << args;
    // Informational lines may come first; the error is one line, the last.
    const size_t error_at = run.err.find("error: ");
    ASSERT_NE(error_at, std::string::npos) << args << ": " << run.err;
    EXPECT_EQ(run.err.find('\n', error_at), run.err.size() - 1) << args << ": " << run.err;
  }
  fs::remove_all(broken);
}

}  // namespace
}  // namespace dsv3
