#include "dsv3/tokenizer/tokenizer.h"

#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_set>

#include "dsv3/tokenizer/byte_level.h"
#include "dsv3/tokenizer/utf8.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": not valid JSON: ", e.what());
  }
}

void check_supported(const nlohmann::json& spec, const char* field,
                     std::initializer_list<const char*> types) {
  if (!spec.contains(field) || spec[field].is_null()) return;
  const std::string type = spec[field].value("type", "");
  for (const char* t : types)
    if (type == t) return;
  fail(field, " type '", type, "' is not supported");
}

// Buffers one thread reuses across encode calls.
struct EncodeScratch {
  std::vector<TextSegment> raw_segments, normalized_segments;
  PreTokenizer::Scratch pre_tokenizer;
  std::string normalized;
};

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  const nlohmann::json config =
      std::filesystem::exists(config_path) ? read_json(config_path) : nlohmann::json();
  return from_json(read_json(dir / "tokenizer.json"), config, (dir / "tokenizer.json").string());
}

Tokenizer Tokenizer::from_json(const nlohmann::json& spec, const nlohmann::json& config,
                               const std::string& source) {
  Tokenizer tokenizer;
  try {
    for (const char* field : {"truncation", "padding"})
      if (spec.contains(field) && !spec[field].is_null())
        fail(field, " is set; dsv3 does not truncate or pad");
    // ByteLevel's post-processor only adjusts offsets, so ids are those of the model.
    check_supported(spec, "post_processor", {"ByteLevel"});
    if (!spec.contains("decoder") || spec["decoder"].is_null()) fail("decoder is missing");
    check_supported(spec, "decoder", {"ByteLevel"});

    tokenizer.normalizer_ = Normalizer::from_json(spec.value("normalizer", nlohmann::json()));
    tokenizer.pre_tokenizer_ = PreTokenizer::from_json(spec.value("pre_tokenizer", nlohmann::json()));
    tokenizer.bpe_ = Bpe::from_json(spec.at("model"));
    tokenizer.added_ = AddedVocabulary(spec.value("added_tokens", nlohmann::json::array()),
                                       tokenizer.bpe_, tokenizer.normalizer_);
    for (const AddedToken& token : tokenizer.added_.tokens())
      tokenizer.added_ids_[token.content] = token.id;
    tokenizer.build_decode_table();
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": ", e.what());
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
  if (!config.is_null()) {
    tokenizer.bos_id_ = tokenizer.config_token(config, "bos_token");
    tokenizer.eos_id_ = tokenizer.config_token(config, "eos_token");
  }
  return tokenizer;
}

std::optional<int32_t> Tokenizer::config_token(const nlohmann::json& config, const char* field) const {
  if (!config.contains(field) || config[field].is_null()) return std::nullopt;
  const nlohmann::json& value = config[field];
  const std::string content =
      value.is_object() ? value.value("content", "") : value.is_string() ? value.get<std::string>() : "";
  const std::optional<int32_t> id = token_id(content);
  if (!id) fail("tokenizer_config.json: ", field, " '", content, "' is not a token of tokenizer.json");
  return id;
}

void Tokenizer::build_decode_table() {
  // `tokenizers` looks an id up among the added tokens first, then in the model's vocab, and
  // tells special tokens by their text.
  std::vector<const std::string*> text_of_id;
  auto set_text = [&](int32_t id, const std::string& text, bool overwrite) {
    if (size_t(id) >= text_of_id.size()) text_of_id.resize(size_t(id) + 1, nullptr);
    if (overwrite || !text_of_id[id]) text_of_id[id] = &text;
  };
  for (const auto& [token, id] : bpe_.vocab()) {
    if (id < 0) fail("model.vocab: token '", token, "' has negative id ", id);
    set_text(id, token, false);
  }
  std::unordered_set<std::string> special_texts;
  for (size_t i = 0; i < added_.tokens().size(); ++i) {
    set_text(added_.tokens()[i].id, added_.match_text(i), true);
    if (added_.tokens()[i].special) special_texts.insert(added_.tokens()[i].content);
  }
  decoded_.assign(text_of_id.size(), Decoded{});
  for (size_t id = 0; id < text_of_id.size(); ++id) {
    if (!text_of_id[id]) continue;
    const std::string bytes = byte_level_decode_token(*text_of_id[id]);
    decoded_[id] = {uint32_t(decoded_bytes_.size()), uint32_t(bytes.size()), true,
                    special_texts.count(*text_of_id[id]) > 0};
    decoded_bytes_ += bytes;
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
    fail("encode: the text is not valid UTF-8 (at byte ", bad, " of ", text.size(), ")");
  if (text.size() > std::numeric_limits<uint32_t>::max())
    fail("encode: the text is ", text.size(), " bytes; at most 4 GiB can be encoded at once");

  thread_local EncodeScratch scratch;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 1);
  auto encode_plain = [&](std::string_view plain) {
    pre_tokenizer_.for_each_piece(plain, scratch.pre_tokenizer,
                                  [&](std::string_view piece) { bpe_.encode_piece(piece, ids); });
  };

  std::vector<TextSegment>& raw = scratch.raw_segments;
  added_.split(text, false, allow_special, raw);
  for (const TextSegment& segment : raw) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    std::string_view plain = text.substr(segment.begin, segment.end - segment.begin);
    if (!normalizer_.is_identity()) {
      scratch.normalized = normalizer_.normalize(plain);
      plain = scratch.normalized;
    }
    std::vector<TextSegment>& inner = scratch.normalized_segments;
    added_.split(plain, true, allow_special, inner);
    for (const TextSegment& part : inner) {
      if (part.token_id >= 0)
        ids.push_back(part.token_id);
      else
        encode_plain(plain.substr(part.begin, part.end - part.begin));
    }
  }
  return ids;
}

const Tokenizer::Decoded& Tokenizer::decoded(int32_t id) const {
  if (id < 0 || size_t(id) >= decoded_.size() || !decoded_[id].known)
    fail("decode: token id ", id, " is not in the vocabulary (ids 0..", decoded_.size() - 1, ")");
  return decoded_[id];
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  const Decoded& d = decoded(id);
  return std::string_view(decoded_bytes_).substr(d.offset, d.length);
}

bool Tokenizer::is_special(int32_t id) const { return decoded(id).special; }

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    const Decoded& d = decoded(id);
    if (skip_special && d.special) continue;
    bytes.append(decoded_bytes_, d.offset, d.length);
  }
  if (find_invalid_utf8(bytes) == std::string::npos) return bytes;
  std::string text;
  append_utf8_lossy(text, bytes);
  return text;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  const std::string key(token);
  if (auto it = added_ids_.find(key); it != added_ids_.end()) return it->second;
  if (auto it = bpe_.vocab().find(key); it != bpe_.vocab().end()) return it->second;
  return std::nullopt;
}

}  // namespace dsv3
