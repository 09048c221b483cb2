// A stored tensor as the checkpoint holds it: borrowed bytes in their on-disk dtype and a row-major
// shape. Sources of named tensors (a safetensors checkpoint, a random preset) implement TensorSource.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dsv3/util/dtype.h"

namespace dsv3 {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major, outermost first
  const uint8_t* data = nullptr;
  size_t n_bytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool contains(const std::string& name) const = 0;
  // The tensor `name`; throws dsv3::Error naming it (and its file, where there is one) when absent.
  virtual TensorView get(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  // Where the tensors come from, for messages: a directory, or "preset:NAME".
  virtual std::string origin() const = 0;
  // Where tensor `name` is stored, for messages about it: its file where there is one.
  virtual std::string location(const std::string& name) const {
    (void)name;
    return origin();
  }
};

}  // namespace dsv3
