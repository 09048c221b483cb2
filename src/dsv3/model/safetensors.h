// One safetensors file: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte after the
// header; "__metadata__", an object of strings, is ignored), then the tensor bytes. The file is memory-mapped and its tensors
// are views into the map: opening costs address space, not a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dsv3/model/tensor.h"
#include "dsv3/util/mapped_file.h"

namespace dsv3 {

// Parses and validates the header of the safetensors bytes [data, data + size) and returns a view of
// each tensor, pointing into those bytes, in header order. Throws dsv3::Error naming `origin` (and the
// tensor) when the header length runs past the end, the JSON is malformed or not an object of tensor
// entries, a dtype is not one dsv3 loads, a shape overflows, or data_offsets are out of range, reversed,
// overlapping or disagree with shape and dtype. Nothing past the header is read.
std::vector<TensorView> parse_safetensors(const uint8_t* data, size_t size, const std::string& origin);

class SafetensorsFile {
 public:
  // Maps `path` and parses its header; throws dsv3::Error naming the file.
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  size_t file_bytes() const { return file_.size(); }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
};

}  // namespace dsv3
