// Writes small safetensors files and model directories for the loading tests, so that the tests carry
// their checkpoints as code rather than as committed binaries.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dsv3::testing {

struct TensorSpec {
  std::string name;
  std::string dtype;  // as safetensors spells it; F64, I32 and friends too, to test refusals
  std::vector<int64_t> shape;
};

// A safetensors file holding `tensors` back to back in order, the header padded with spaces to a
// multiple of 8 bytes as the Python writer does. Byte k of tensor i is tensor_byte(i, k).
std::string safetensors_bytes(const std::vector<TensorSpec>& tensors);

// A safetensors file whose header is exactly `header_json`, followed by `data_bytes` zero bytes.
std::string safetensors_bytes(const std::string& header_json, size_t data_bytes);

uint8_t tensor_byte(size_t tensor_index, size_t k);

void write_file(const std::filesystem::path& path, const std::string& bytes);

// model.safetensors.index.json for `weight_map` (tensor name -> shard file name).
void write_index(const std::filesystem::path& dir, const std::vector<std::pair<std::string, std::string>>& weight_map);

// A fresh directory under the system temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace dsv3::testing
