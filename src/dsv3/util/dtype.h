// Element types of stored tensors, named as safetensors names them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dsv3 {

enum class DType : uint8_t { F32, BF16, F16, F8_E4M3 };

constexpr size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F8_E4M3: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F8_E4M3: return "F8_E4M3";
  }
  return "?";
}

// The safetensors dtype string ("BF16", "F8_E4M3", ...) to a DType; nullopt for types dsv3 does not load.
inline std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3})
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

}  // namespace dsv3
