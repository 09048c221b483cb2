// Memory a backend owns (host memory for cpu, device memory for cuda) and the 2-D views of it that
// ops take. The model passes these around without touching what they point at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace dsv3 {

// An owning block of backend memory; freed through the backend that made it.
class Buffer {
 public:
  Buffer() = default;
  Buffer(void* data, size_t n_bytes, std::function<void(void*)> release)
      : data_(data, std::move(release)), n_bytes_(n_bytes) {}
  void* data() const { return data_.get(); }
  size_t n_bytes() const { return n_bytes_; }

 private:
  std::unique_ptr<void, std::function<void(void*)>> data_{nullptr, [](void*) {}};
  size_t n_bytes_ = 0;
};

// A row-major matrix of activations in backend memory: `rows` rows of `cols` elements, rows
// `stride` elements apart (stride >= cols lets a view pick columns out of a wider matrix).
// The element type is the backend's activation type (float32 on cpu).
struct Act {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
  int64_t elem_bytes = 4;

  Act rows_slice(int64_t begin, int64_t count) const {
    return {static_cast<uint8_t*>(data) + begin * stride * elem_bytes, count, cols, stride, elem_bytes};
  }
  Act cols_slice(int64_t begin, int64_t count) const {
    return {static_cast<uint8_t*>(data) + begin * elem_bytes, rows, count, stride, elem_bytes};
  }
};

// A Buffer holding one matrix, and its full view.
struct ActBuffer {
  Buffer memory;
  Act view;
};

}  // namespace dsv3
