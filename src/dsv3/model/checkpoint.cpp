#include "dsv3/model/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleFileName = "model.safetensors";

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// weight_map of the index: tensor name -> shard file name, in name order.
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  std::ifstream in(index);
  if (!in) fail(index.string(), ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(index.string(), ": not valid JSON: ", e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object())
    fail(index.string(), ": has no weight_map object");
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, shard] : j.at("weight_map").items()) {
    if (!shard.is_string()) fail(index.string(), ": weight_map entry of tensor ", name, " is not a file name");
    const std::string file = shard.get<std::string>();
    // Shards sit beside the index; a path elsewhere is a corrupt (or hostile) index.
    if (file.empty() || fs::path(file).filename() != file || file == "." || file == "..")
      fail(index.string(), ": tensor ", name, " is mapped to '", file, "', which is not a file name in the directory");
    weight_map.emplace(name, file);
  }
  return weight_map;
}

}  // namespace

Checkpoint::Checkpoint(const fs::path& dir) : dir_(dir) {
  if (!fs::is_directory(dir)) fail(dir.string(), ": not a model directory (it does not exist or is a file)");
  const fs::path index = dir / kIndexName;
  if (fs::exists(index)) {
    std::map<std::string, const SafetensorsFile*> opened;  // shard file name -> its parsed file
    std::unordered_map<const SafetensorsFile*, std::unordered_map<std::string, const TensorView*>> by_name;
    for (const auto& [name, file] : read_weight_map(index)) {
      auto it = opened.find(file);
      if (it == opened.end()) {
        const fs::path shard_path = dir / file;
        if (!fs::is_regular_file(shard_path))
          fail(index.string(), ": tensor ", name, " is mapped to shard ", shard_path.string(), ", which does not exist");
        shards_.push_back(std::make_unique<SafetensorsFile>(shard_path));
        const SafetensorsFile* shard = shards_.back().get();
        for (const TensorView& view : shard->tensors()) by_name[shard].emplace(view.name, &view);
        it = opened.emplace(file, shard).first;
      }
      const SafetensorsFile& shard = *it->second;
      const auto found = by_name[&shard].find(name);
      if (found == by_name[&shard].end())
        fail(index.string(), ": tensor ", name, " is mapped to shard ", shard.path().string(), ", which does not contain it");
      add(*found->second, shard);
    }
    return;
  }

  std::vector<fs::path> files;
  if (fs::exists(dir / kSingleFileName)) {
    files.push_back(dir / kSingleFileName);
  } else {
    for (const fs::directory_entry& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) fail(dir.string(), ": no ", kIndexName, ", ", kSingleFileName, " or other *.safetensors file");
  for (const fs::path& file : files) {
    shards_.push_back(std::make_unique<SafetensorsFile>(file));
    for (const TensorView& view : shards_.back()->tensors()) {
      const auto clash = tensors_.find(view.name);
      if (clash != tensors_.end())
        fail(dir.string(), ": tensor ", view.name, " is in both ", clash->second.shard->path().string(), " and ",
             file.string());
      add(view, *shards_.back());
    }
  }
}

void Checkpoint::add(const TensorView& view, const SafetensorsFile& shard) {
  tensors_.emplace(view.name, Entry{view, &shard});
  tensor_bytes_ += view.n_bytes;
}

const Checkpoint::Entry& Checkpoint::entry(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(dir_.string(), ": checkpoint has no tensor ", name);
  return it->second;
}

bool Checkpoint::contains(const std::string& name) const { return tensors_.count(name) > 0; }

TensorView Checkpoint::get(const std::string& name) const { return entry(name).view; }

const fs::path& Checkpoint::file_of(const std::string& name) const { return entry(name).shard->path(); }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

void check_shape(const TensorView& tensor, const std::vector<int64_t>& shape, const std::string& where) {
  if (tensor.shape != shape)
    fail(where, ": tensor ", tensor.name, " has shape ", shape_string(tensor.shape), ", expected ", shape_string(shape));
}

void check_fp8_block_scales(const TensorView& weight, const TensorView& scale_inv, const std::string& where,
                            int64_t block_out, int64_t block_in) {
  if (weight.dtype != DType::F8_E4M3)
    fail(where, ": tensor ", weight.name, " has dtype ", dtype_name(weight.dtype), ", expected F8_E4M3");
  if (weight.shape.size() != 2)
    fail(where, ": tensor ", weight.name, " has shape ", shape_string(weight.shape), ", expected [out, in]");
  if (scale_inv.dtype != DType::F32)
    fail(where, ": tensor ", scale_inv.name, " has dtype ", dtype_name(scale_inv.dtype), ", expected F32");
  const std::vector<int64_t> blocks = {ceil_div(weight.shape[0], block_out), ceil_div(weight.shape[1], block_in)};
  if (scale_inv.shape != blocks)
    fail(where, ": tensor ", scale_inv.name, " has shape ", shape_string(scale_inv.shape), ", expected ",
         shape_string(blocks), " (one scale a ", block_out, "x", block_in, " block of ", weight.name, " ",
         shape_string(weight.shape), ")");
}

}  // namespace dsv3
