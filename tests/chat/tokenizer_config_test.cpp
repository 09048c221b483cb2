// TokenizerConfig reads what chat rendering needs from tokenizer_config.json in every form
// Hugging Face writes it, and names the file and field when it cannot.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "dsv3/tokenizer/chat_template.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

// A fresh directory holding the given files, removed with the object.
class ConfigDir {
 public:
  explicit ConfigDir(std::initializer_list<std::pair<std::string, std::string>> files) {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("dsv3_config_" + std::string(test->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
    for (const auto& [name, text] : files) std::ofstream(path_ / name) << text;
  }
  ~ConfigDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string load_error(const ConfigDir& dir) {
  try {
    TokenizerConfig::load(dir.path());
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(TokenizerConfig, ReadsTheDeepSeekV3Config) {
  const TokenizerConfig config = TokenizerConfig::load(DSV3_TOKENIZER_DIR);
  EXPECT_EQ(config.chat_template, read_text(fs::path(DSV3_FIXTURES_DIR) / "chat/templates/deepseek_v3.jinja"));
  EXPECT_EQ(config.bos_token, "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(config.eos_token, "<｜end▁of▁sentence｜>");
  EXPECT_TRUE(config.add_bos_token);
}

TEST(TokenizerConfig, TokensMayBePlainStrings) {
  const ConfigDir dir({{"tokenizer_config.json",
                        R"({"chat_template": "{{ bos_token }}", "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false})"}});
  const TokenizerConfig config = TokenizerConfig::load(dir.path());
  EXPECT_EQ(config.bos_token, "<s>");
  EXPECT_EQ(config.eos_token, "</s>");
  EXPECT_FALSE(config.add_bos_token);
}

TEST(TokenizerConfig, AListOfTemplatesGivesTheDefaultOne) {
  const ConfigDir dir({{"tokenizer_config.json",
                        R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})"}});
  EXPECT_EQ(TokenizerConfig::load(dir.path()).chat_template, "D");
}

TEST(TokenizerConfig, TheTemplateMayLiveInChatTemplateJinja) {
  const ConfigDir dir({{"tokenizer_config.json", R"({"bos_token": "<s>"})"}, {"chat_template.jinja", "{{ bos_token }}!\n"}});
  EXPECT_EQ(TokenizerConfig::load(dir.path()).chat_template, "{{ bos_token }}!\n");
}

TEST(TokenizerConfig, WithoutATemplateOnlyChatRenderingFails) {
  const ConfigDir dir({{"tokenizer_config.json", R"({"bos_token": "<s>"})"}});
  const TokenizerConfig config = TokenizerConfig::load(dir.path());
  EXPECT_EQ(config.chat_template, "");
  EXPECT_THROW(render_chat(config, {{"messages", nlohmann::ordered_json::array()}}), Error);
}

TEST(TokenizerConfig, BadFilesAndFieldsAreNamed) {
  const ConfigDir missing({});
  EXPECT_NE(load_error(missing).find("tokenizer_config.json: cannot open"), std::string::npos);
  const ConfigDir invalid({{"tokenizer_config.json", "{"}});
  EXPECT_NE(load_error(invalid).find("tokenizer_config.json: not valid JSON"), std::string::npos);
  const ConfigDir bad_bos({{"tokenizer_config.json", R"({"bos_token": 5})"}});
  EXPECT_NE(load_error(bad_bos).find("field bos_token"), std::string::npos);
  const ConfigDir bad_flag({{"tokenizer_config.json", R"({"add_bos_token": "yes"})"}});
  EXPECT_NE(load_error(bad_flag).find("field add_bos_token"), std::string::npos);
  const ConfigDir no_default({{"tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}]})"}});
  EXPECT_NE(load_error(no_default).find("no \"default\" template"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
