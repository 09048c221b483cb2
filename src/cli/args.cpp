#include "cli/args.h"

#include <charconv>

#include "dsv3/util/error.h"

namespace dsv3::cli {

Args::Args(int argc, char** argv, int first, const std::vector<FlagSpec>& specs) {
  for (int i = first; i < argc; ++i) {
    std::string token = argv[i];
    if (token.size() < 2 || token[0] != '-') {
      positional_.push_back(token);
      continue;
    }
    std::string name = token.substr(token[1] == '-' ? 2 : 1);
    std::optional<std::string> inline_value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs)
      if ((token[1] == '-' && s.name == name) || (token[1] != '-' && s.short_name == name)) spec = &s;
    if (!spec) fail("unknown flag ", token.substr(0, token.find('=')));
    if (!spec->takes_value) {
      if (inline_value) fail("flag --", spec->name, " takes no value");
      values_[spec->name] = "1";
    } else if (inline_value) {
      values_[spec->name] = *inline_value;
    } else {
      if (i + 1 >= argc) fail("flag --", spec->name, " needs a value");
      values_[spec->name] = argv[++i];
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

std::string Args::require(const std::string& name) const {
  auto value = get(name);
  if (!value) fail("missing required flag --", name);
  return *value;
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  auto value = get(name);
  if (!value) return fallback;
  int64_t result = 0;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), result);
  if (ec != std::errc() || end != value->data() + value->size())
    fail("flag --", name, " expects an integer, got '", *value, "'");
  return result;
}

std::vector<int64_t> Args::get_int_list(const std::string& name) const {
  std::vector<int64_t> values;
  auto value = get(name);
  if (!value) return values;
  const char* p = value->data();
  const char* end = p + value->size();
  while (p < end) {
    int64_t v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || (next != end && *next != ','))
      fail("flag --", name, " expects integers separated by commas, got '", *value, "'");
    values.push_back(v);
    p = next == end ? end : next + 1;
  }
  return values;
}

double Args::get_double(const std::string& name, double fallback) const {
  auto value = get(name);
  if (!value) return fallback;
  try {
    size_t used = 0;
    const double result = std::stod(*value, &used);
    if (used == value->size()) return result;
  } catch (const std::exception&) {
  }
  fail("flag --", name, " expects a number, got '", *value, "'");
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    int32_t id = 0;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + comma, id);
    if (ec != std::errc() || end != text.data() + comma || pos == comma)
      fail("flag --", flag, " expects comma-separated token ids, got '", text, "'");
    ids.push_back(id);
    pos = comma + 1;
  }
  return ids;
}

}  // namespace dsv3::cli
