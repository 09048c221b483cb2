#include <fstream>
#include <iterator>

#include "dsv3/tokenizer/chat_template.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// bos_token / eos_token are a string or an AddedToken object {"content": ...}.
std::string token_text(const nlohmann::json& config, const char* field, const std::string& file) {
  if (!config.contains(field) || config[field].is_null()) return "";
  const nlohmann::json& v = config[field];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail(file, ": field ", field, " must be a string or an object with a string \"content\"");
}

}  // namespace

TokenizerConfig TokenizerConfig::load(const std::filesystem::path& dir) {
  const std::string file = (dir / "tokenizer_config.json").string();
  std::ifstream in(file);
  if (!in) fail(file, ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(file, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(file, ": expected a JSON object");
  TokenizerConfig config;
  config.bos_token = token_text(j, "bos_token", file);
  config.eos_token = token_text(j, "eos_token", file);
  if (j.contains("add_bos_token") && !j["add_bos_token"].is_null()) {
    if (!j["add_bos_token"].is_boolean()) fail(file, ": field add_bos_token must be true or false");
    config.add_bos_token = j["add_bos_token"].get<bool>();
  }
  if (!j.contains("chat_template") || j["chat_template"].is_null()) {
    // transformers 4.43 and later save the template beside the config instead.
    std::ifstream jinja_file(dir / "chat_template.jinja");
    if (jinja_file) config.chat_template.assign(std::istreambuf_iterator<char>(jinja_file), {});
    return config;
  }
  const nlohmann::json& t = j["chat_template"];
  if (t.is_string()) {
    config.chat_template = t.get<std::string>();
  } else if (t.is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
    for (const auto& entry : t)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        config.chat_template = entry["template"].get<std::string>();
    if (config.chat_template.empty()) fail(file, ": chat_template list has no \"default\" template");
  } else {
    fail(file, ": chat_template must be a string or a list of named templates");
  }
  return config;
}

}  // namespace dsv3
