#include "dsv3/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "dsv3/tokenizer/regex.h"
#include "dsv3/tokenizer/utf8.h"
#include "dsv3/util/error.h"
#include "dsv3/util/log.h"

namespace dsv3 {
namespace {

// A word character as Rust's regex \w has it (what `tokenizers` tests single_word tokens with).
bool is_word_char(std::string_view character) {
  static const Regex word(R"(\A[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", false,
                          "single_word test");
  size_t begin = 0, end = 0;
  return word.search(character, 0, begin, end);
}

bool ends_with_word_char(std::string_view text) {
  if (text.empty()) return false;
  size_t n = 0;
  decode_utf8_before(text, text.size(), n);
  return is_word_char(text.substr(text.size() - n));
}

bool starts_with_word_char(std::string_view text) {
  if (text.empty()) return false;
  size_t n = 0;
  decode_utf8(text, 0, n);
  return is_word_char(text.substr(0, n));
}

// Where the white space at the end of `text` begins.
size_t trailing_space_begin(std::string_view text) {
  size_t end = text.size(), n = 0;
  while (end > 0 && is_white_space(decode_utf8_before(text, end, n))) end -= n;
  return end;
}

// Bytes of white space at the start of `text`.
size_t leading_space_length(std::string_view text) {
  size_t begin = 0, n = 0;
  while (begin < text.size() && is_white_space(decode_utf8(text, begin, n))) begin += n;
  return begin;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view text, uint32_t token_index) {
  uint32_t node = 0;
  for (char c : text) {
    auto& children = nodes_[node].children;
    auto it = std::find_if(children.begin(), children.end(),
                           [&](const auto& child) { return child.first == uint8_t(c); });
    if (it != children.end()) {
      node = it->second;
      continue;
    }
    children.emplace_back(uint8_t(c), uint32_t(nodes_.size()));
    node = uint32_t(nodes_.size());
    nodes_.emplace_back();
  }
  nodes_[node].token_index = token_index;
  a_first_byte_ = uint8_t(text.front());
  n_first_bytes_ += !first_bytes_[a_first_byte_];
  first_bytes_[a_first_byte_] = true;
}

size_t AddedVocabulary::Trie::next_candidate(std::string_view text, size_t pos) const {
  if (n_first_bytes_ == 1) {  // DeepSeek's all begin with '<': let memchr scan
    const void* found = std::memchr(text.data() + pos, a_first_byte_, text.size() - pos);
    return found ? size_t(static_cast<const char*>(found) - text.data()) : text.size();
  }
  while (pos < text.size() && !first_bytes_[uint8_t(text[pos])]) ++pos;
  return pos;
}

bool AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos, size_t& length,
                                       uint32_t& token_index) const {
  bool found = false;
  uint32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& children = nodes_[node].children;
    auto it = std::find_if(children.begin(), children.end(),
                           [&](const auto& child) { return child.first == uint8_t(text[i]); });
    if (it == children.end()) break;
    node = it->second;
    if (nodes_[node].token_index >= 0) {
      found = true;
      length = i + 1 - pos;
      token_index = uint32_t(nodes_[node].token_index);
    }
  }
  return found;
}

AddedVocabulary::AddedVocabulary(const nlohmann::json& added_tokens, const Bpe& model,
                                 const Normalizer& normalizer) {
  std::unordered_map<std::string, size_t> index_of_content;
  int32_t next_id = int32_t(model.vocab().size());
  for (const nlohmann::json& entry : added_tokens) {
    AddedToken token;
    const int32_t file_id = entry.at("id").get<int32_t>();
    token.content = entry.at("content").get<std::string>();
    token.special = entry.value("special", false);
    token.single_word = entry.value("single_word", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.normalized = entry.value("normalized", !token.special);
    if (token.content.empty()) continue;  // `tokenizers` ignores empty added tokens

    if (auto seen = index_of_content.find(token.content); seen != index_of_content.end()) {
      token.id = tokens_[seen->second].id;  // the same text again: new flags, same id
      tokens_[seen->second] = token;
      continue;
    }
    auto in_vocab = model.vocab().find(token.content);
    token.id = in_vocab != model.vocab().end() ? in_vocab->second : next_id++;
    if (token.id != file_id)
      log_warn("added token '", token.content, "' has id ", file_id, " in tokenizer.json but gets ",
               token.id, ", as in the tokenizers library");
    index_of_content[token.content] = tokens_.size();
    tokens_.push_back(std::move(token));
  }
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& token = tokens_[i];
    std::string text = token.normalized ? normalizer.normalize(token.content) : token.content;
    if (!text.empty()) (token.normalized ? normalized_trie_ : raw_trie_).insert(text, uint32_t(i));
    match_texts_.push_back(std::move(text));
  }
}

void AddedVocabulary::split(std::string_view text, bool normalized_pass, bool allow_special,
                            std::vector<TextSegment>& segments) const {
  segments.clear();
  const Trie& trie = normalized_pass ? normalized_trie_ : raw_trie_;
  size_t segment_start = 0;  // where the text not yet given to a segment begins
  if (!trie.empty()) {
    size_t pos = 0;
    while ((pos = trie.next_candidate(text, pos)) < text.size()) {
      size_t length = 0;
      uint32_t index = 0;
      if (!trie.longest_at(text, pos, length, index)) {
        ++pos;
        continue;
      }
      // The search resumes after the match even when the match is then rejected below.
      size_t start = pos, stop = pos + length;
      pos = stop;
      const AddedToken& token = tokens_[index];
      if (token.special && !allow_special) continue;
      if (token.single_word && (ends_with_word_char(text.substr(0, start)) ||
                                starts_with_word_char(text.substr(stop))))
        continue;
      // White space an earlier token already took stays with it.
      if (token.lstrip) start = std::max(trailing_space_begin(text.substr(0, start)), segment_start);
      if (token.rstrip) stop += leading_space_length(text.substr(stop));
      if (segment_start < start) segments.push_back({segment_start, start, -1});
      segments.push_back({start, stop, token.id});
      segment_start = stop;
    }
  }
  if (segment_start < text.size()) segments.push_back({segment_start, text.size(), -1});
}

}  // namespace dsv3
