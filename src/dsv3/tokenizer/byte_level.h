// The byte-level alphabet of GPT-2 style BPE: each of the 256 bytes is written as one printable
// Unicode character (printable Latin-1 bytes as themselves, the rest as U+0100.. upwards, so a
// space is "Ġ" and a newline "Ċ"). tokenizer.json spells its vocabulary and merges in this
// alphabet; dsv3 converts them to raw bytes once at load and runs BPE on the bytes of the text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

// The alphabet character that stands for `byte`, as UTF-8.
std::string byte_level_char(uint8_t byte);

// The bytes that `token` (a string over the alphabet) stands for, or nullopt when `token` has a
// character outside the alphabet (as special tokens such as "<｜User｜>" do).
std::optional<std::string> byte_level_to_bytes(std::string_view token);

// `bytes` spelled in the alphabet.
std::string bytes_to_byte_level(std::string_view bytes);

// What the ByteLevel decoder of `tokenizers` makes of one token: its bytes when every character
// is in the alphabet, otherwise the token's own UTF-8 text unchanged.
std::string byte_level_decode_token(std::string_view token);

}  // namespace dsv3
