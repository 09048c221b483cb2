// Decoding a stream of token ids as they are generated. A token may end in the middle of a UTF-8
// character (one emoji is often three or four byte tokens); the decoder holds back such an
// unfinished character until the bytes that complete it arrive, so every piece it returns is
// valid UTF-8. The pieces joined, then finish(), equal Tokenizer::decode of all the ids.
#pragma once

#include <cstdint>
#include <string>

#include "dsv3/tokenizer/tokenizer.h"

namespace dsv3 {

class IncrementalDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special = false);

  // The text that token `id` completes (often empty while a character is unfinished). Throws
  // dsv3::Error on an unknown id.
  std::string push(int32_t id);

  // What is still held back, with an unfinished character as U+FFFD; the decoder is then empty.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an unfinished character
};

}  // namespace dsv3
