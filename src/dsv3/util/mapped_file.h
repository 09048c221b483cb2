// A read-only memory map of a whole file: checkpoint shards stay on disk and in the page cache,
// so loading a model costs address space, not a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace dsv3 {

class MappedFile {
 public:
  // Maps `path`; throws dsv3::Error naming the file when it cannot be opened or mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv3
