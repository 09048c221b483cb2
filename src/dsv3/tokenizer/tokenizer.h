// The tokenizer of a DeepSeek-V3 family checkpoint, read from its tokenizer.json (and
// tokenizer_config.json for the bos/eos tokens): byte-level BPE that gives exactly the ids of the
// Hugging Face `tokenizers` library, which the model was trained with. Encoding:
//   1. added tokens ("<｜User｜>", ...) are cut out whole (added_tokens.h);
//   2. the text between them is normalized (normalizer.h) and cut into pieces by the
//      pre-tokenizer's regex Splits (pre_tokenizer.h);
//   3. each piece's bytes are merged by BPE (bpe.h), with a per-thread cache of seen pieces.
// Decoding concatenates the tokens' bytes (byte_level.h) and replaces ill-formed UTF-8 with U+FFFD.
// A Tokenizer is immutable after load: encode and decode may run on many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/added_tokens.h"
#include "dsv3/tokenizer/bpe.h"
#include "dsv3/tokenizer/normalizer.h"
#include "dsv3/tokenizer/pre_tokenizer.h"

namespace dsv3 {

class Tokenizer {
 public:
  // Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json. Throws dsv3::Error
  // naming the file and the field or component that is missing, malformed or unsupported.
  static Tokenizer load(const std::filesystem::path& dir);

  // From parsed files; `config` may be null. `source` names them in errors.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const nlohmann::json& config,
                             const std::string& source);

  // The ids of `text` (no bos is added). With `allow_special`, the strings of special tokens in
  // the text become those tokens, as `tokenizers` does by default; without it (`tokenizers`'
  // encode_special_tokens) they are encoded as plain text. Added tokens that are not special
  // (DeepSeek-V3's <｜User｜>, <｜Assistant｜>, tool tokens) are cut out either way. Throws
  // dsv3::Error when `text` is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;

  // The text of `ids`; with `skip_special`, special tokens are left out. Byte sequences that are
  // not valid UTF-8 become U+FFFD. Throws dsv3::Error on an id that is no token.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The bytes token `id` decodes to: possibly part of a UTF-8 character. Throws on an unknown id.
  std::string_view token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;

  // The id of `token` as spelled in tokenizer.json ("Ġthe", "<｜User｜>"), if there is one.
  std::optional<int32_t> token_id(std::string_view token) const;

  // One more than the largest token id.
  int32_t vocab_size() const { return int32_t(decoded_.size()); }

  // The bos_token and eos_token of tokenizer_config.json, when it names them.
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }

 private:
  // What decoding token id gives: bytes in decoded_bytes_.
  struct Decoded {
    uint32_t offset = 0, length = 0;
    bool known = false;
    bool special = false;
  };

  const Decoded& decoded(int32_t id) const;
  void build_decode_table();
  std::optional<int32_t> config_token(const nlohmann::json& config, const char* field) const;

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  AddedVocabulary added_;
  Bpe bpe_;
  std::unordered_map<std::string, int32_t> added_ids_;  // added token content -> id
  std::vector<Decoded> decoded_;                        // indexed by id
  std::string decoded_bytes_;
  std::optional<int32_t> bos_id_, eos_id_;
};

}  // namespace dsv3
