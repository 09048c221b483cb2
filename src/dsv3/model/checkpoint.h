// A Hugging Face model directory's tensors: safetensors shards listed by model.safetensors.index.json,
// or a single model.safetensors, or (with no index) every *.safetensors in the directory. Every shard is
// memory-mapped and every header validated when the checkpoint opens, so a truncated or corrupt shard
// fails there, with its file named, rather than at first touch. Tensors are views into the maps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dsv3/model/safetensors.h"
#include "dsv3/model/tensor.h"

namespace dsv3 {

class Checkpoint : public TensorSource {
 public:
  // Opens the tensors of the model directory `dir`; throws dsv3::Error naming the directory, index,
  // shard or tensor at fault.
  explicit Checkpoint(const std::filesystem::path& dir);

  bool contains(const std::string& name) const override;
  // Throws dsv3::Error naming `name` and the directory when the checkpoint has no such tensor.
  TensorView get(const std::string& name) const override;
  std::vector<std::string> names() const override;  // sorted
  std::string origin() const override { return dir_.string(); }
  std::string location(const std::string& name) const override { return file_of(name).string(); }

  // The shard that holds tensor `name` (for messages); throws like get().
  const std::filesystem::path& file_of(const std::string& name) const;
  // Bytes of all tensors as stored (what binding every tensor maps, headers excluded).
  size_t tensor_bytes() const { return tensor_bytes_; }
  size_t n_shards() const { return shards_.size(); }

 private:
  struct Entry {
    TensorView view;
    const SafetensorsFile* shard;
  };
  const Entry& entry(const std::string& name) const;
  void add(const TensorView& view, const SafetensorsFile& shard);

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, Entry> tensors_;
  size_t tensor_bytes_ = 0;
};

// Checks that `tensor` has `shape`; the error names `where` (its file, or the source's origin), the
// tensor and both shapes.
void check_shape(const TensorView& tensor, const std::vector<int64_t>& shape, const std::string& where);

// Checks the block scales of an FP8 weight: `scale_inv` (the weight's `<name>_scale_inv`) must be F32 of
// shape [ceil(out / block_out), ceil(in / block_in)] for `weight` of shape [out, in] in F8_E4M3, edge
// blocks being partial. The error names `where` and the tensor at fault.
void check_fp8_block_scales(const TensorView& weight, const TensorView& scale_inv, const std::string& where,
                            int64_t block_out = 128, int64_t block_in = 128);

}  // namespace dsv3
