#include "dsv3/model/safetensors.h"

#include <algorithm>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

using nlohmann::json;

constexpr size_t kHeaderLengthBytes = 8;
// The safetensors format caps the header at 100 MB; a larger length is corrupt, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The top-level JSON object, failing on a malformed header or a tensor name given twice (which a
// plain parse would silently resolve to the last entry).
json parse_header(const uint8_t* begin, const uint8_t* end, const std::string& origin) {
  std::set<std::string> names;
  std::string duplicate;
  const json::parser_callback_t note_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !names.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(begin, end, note_duplicates);
  } catch (const json::exception& e) {
    fail(origin, ": safetensors header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(origin, ": safetensors header is a JSON ", header.type_name(), ", not an object");
  if (!duplicate.empty()) fail(origin, ": tensor ", duplicate, " appears twice in the safetensors header");
  return header;
}

// Reads one tensor entry; `data_bytes` is the size of the data section its offsets index into.
TensorView read_entry(const std::string& name, const json& entry, const uint8_t* data, uint64_t data_bytes,
                      const std::string& origin) {
  const auto bad = [&](const auto&... what) { fail(origin, ": tensor ", name, ": ", what...); };
  if (!entry.is_object()) bad("entry is a JSON ", entry.type_name(), ", not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) bad("entry has no ", key);

  const json& dtype = entry.at("dtype");
  if (!dtype.is_string()) bad("dtype is ", dtype.dump(), ", not a string");
  const std::optional<DType> type = dtype_from_name(dtype.get<std::string>());
  if (!type) bad("dtype ", dtype.get<std::string>(), " is not one dsv3 loads (F32, BF16, F16, F8_E4M3)");

  const json& shape = entry.at("shape");
  if (!shape.is_array()) bad("shape is ", shape.dump(), ", not a list");
  TensorView view;
  view.name = name;
  view.dtype = *type;
  // Every running product must fit int64_t, as TensorView::numel() multiplies in this order.
  int64_t numel = 1;
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned()) bad("shape ", shape.dump(), " has an entry that is not a non-negative integer");
    const uint64_t d = dim.get<uint64_t>();
    if (d > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, int64_t(d), &numel))
      bad("shape ", shape.dump(), " overflows");
    view.shape.push_back(int64_t(d));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(uint64_t(numel), uint64_t(dtype_bytes(*type)), &bytes))
    bad("shape ", shape.dump(), " overflows");

  const json& offsets = entry.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    bad("data_offsets ", offsets.dump(), " is not a list of two non-negative integers");
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  if (begin > end) bad("data_offsets ", offsets.dump(), " begin after they end");
  if (end > data_bytes)
    bad("data_offsets ", offsets.dump(), " run past the end of the data (", data_bytes,
        " bytes): the file is truncated or corrupt");
  if (end - begin != bytes)
    bad("data_offsets ", offsets.dump(), " span ", end - begin, " bytes, but shape ", shape.dump(), " of ",
        dtype_name(*type), " needs ", bytes);
  view.data = data + begin;
  view.n_bytes = size_t(bytes);
  return view;
}

// Two tensors must not share bytes; empty tensors occupy none.
void check_no_overlap(const std::vector<TensorView>& views, const std::string& origin) {
  std::vector<const TensorView*> by_offset;
  for (const TensorView& v : views)
    if (v.n_bytes > 0) by_offset.push_back(&v);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorView& prev = *by_offset[i - 1];
    if (by_offset[i]->data < prev.data + prev.n_bytes)
      fail(origin, ": tensor ", by_offset[i]->name, ": data_offsets overlap those of tensor ", prev.name);
  }
}

}  // namespace

std::vector<TensorView> parse_safetensors(const uint8_t* data, size_t size, const std::string& origin) {
  if (size < kHeaderLengthBytes)
    fail(origin, ": ", size, " bytes is too short for a safetensors file (it starts with an 8-byte header length)");
  const uint64_t header_bytes = read_u64_le(data);
  const uint64_t after_length = size - kHeaderLengthBytes;
  if (header_bytes > after_length)
    fail(origin, ": safetensors header length ", header_bytes, " runs past the end of the file (", size,
         " bytes): the file is truncated or not safetensors");
  if (header_bytes > kMaxHeaderBytes)
    fail(origin, ": safetensors header length ", header_bytes, " exceeds the format's limit of ", kMaxHeaderBytes);

  const uint8_t* header_begin = data + kHeaderLengthBytes;
  const uint8_t* tensor_data = header_begin + header_bytes;
  const uint64_t data_bytes = after_length - header_bytes;
  const json header = parse_header(header_begin, tensor_data, origin);

  std::vector<TensorView> views;
  views.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      // Free-form strings (format, provenance) that loading does not need; the format wants them strings.
      if (!entry.is_object() || !std::all_of(entry.begin(), entry.end(), [](const json& v) { return v.is_string(); }))
        fail(origin, ": __metadata__ of the safetensors header is not an object of strings");
      continue;
    }
    views.push_back(read_entry(name, entry, tensor_data, data_bytes, origin));
  }
  check_no_overlap(views, origin);
  return views;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : file_(path), tensors_(parse_safetensors(file_.data(), file_.size(), path.string())) {}

}  // namespace dsv3
