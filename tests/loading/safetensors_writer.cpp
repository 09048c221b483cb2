#include "loading/safetensors_writer.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace dsv3::testing {
namespace {

size_t element_bytes(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {{"F64", 8}, {"F32", 4}, {"I32", 4}, {"BF16", 2},
                                                      {"F16", 2}, {"I16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
                                                      {"I8", 1},  {"U8", 1},  {"BOOL", 1}};
  return sizes.at(dtype);
}

std::string with_length_prefix(std::string header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
}

}  // namespace

uint8_t tensor_byte(size_t tensor_index, size_t k) { return uint8_t(tensor_index * 31 + k * 7 + 1); }

std::string safetensors_bytes(const std::vector<TensorSpec>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (size_t i = 0; i < tensors.size(); ++i) {
    size_t n = element_bytes(tensors[i].dtype);
    for (int64_t d : tensors[i].shape) n *= size_t(d);
    const size_t begin = data.size();
    for (size_t k = 0; k < n; ++k) data.push_back(char(tensor_byte(i, k)));
    header[tensors[i].name] = {{"dtype", tensors[i].dtype}, {"shape", tensors[i].shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return with_length_prefix(text, data);
}

std::string safetensors_bytes(const std::string& header_json, size_t data_bytes) {
  return with_length_prefix(header_json, std::string(data_bytes, '\0'));
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_index(const std::filesystem::path& dir, const std::vector<std::pair<std::string, std::string>>& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, file] : weight_map) index["weight_map"][name] = file;
  write_file(dir / "model.safetensors.index.json", index.dump(2));
}

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("dsv3-loading-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace dsv3::testing
