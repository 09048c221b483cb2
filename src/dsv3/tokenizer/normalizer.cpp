#include "dsv3/tokenizer/normalizer.h"

#include "dsv3/tokenizer/utf8.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

std::string strip_white_space(std::string_view text, bool left, bool right) {
  size_t begin = 0, end = text.size(), n = 0;
  while (left && begin < end && is_white_space(decode_utf8(text, begin, n))) begin += n;
  while (right && end > begin && is_white_space(decode_utf8_before(text, end, n))) end -= n;
  return std::string(text.substr(begin, end - begin));
}

// `text` with every match of `pattern` (walked as `tokenizers` walks them) replaced by `content`.
std::string replace_all(std::string_view text, const Regex& pattern, std::string_view content) {
  std::string out;
  size_t copied = 0;
  pattern.for_each_match(text, [&](size_t begin, size_t end) {
    out.append(text, copied, begin - copied);
    out += content;
    copied = end;
  });
  out.append(text, copied);
  return out;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& spec) {
  Normalizer normalizer;
  if (!spec.is_null()) add_steps(spec, normalizer.steps_);
  return normalizer;
}

void Normalizer::add_steps(const nlohmann::json& spec, std::vector<Step>& steps) {
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const nlohmann::json& inner : spec.at("normalizers")) add_steps(inner, steps);
  } else if (type == "Prepend") {
    steps.push_back({Kind::Prepend, spec.at("prepend").get<std::string>(), std::nullopt});
  } else if (type == "Replace") {
    const nlohmann::json& pattern = spec.at("pattern");
    const bool literal = pattern.contains("String");
    const std::string source = pattern.at(literal ? "String" : "Regex").get<std::string>();
    steps.push_back({Kind::Replace, spec.at("content").get<std::string>(),
                     Regex(source, literal, "normalizer Replace")});
  } else if (type == "Strip") {
    Step step{Kind::Strip, "", std::nullopt};
    step.strip_left = spec.value("strip_left", true);
    step.strip_right = spec.value("strip_right", true);
    steps.push_back(std::move(step));
  } else {
    fail("normalizer type '", type,
         "' is not supported (supported: Sequence, Prepend, Replace, Strip)");
  }
}

std::string Normalizer::normalize(std::string_view text) const {
  std::string current(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::Prepend:
        if (!current.empty()) current.insert(0, step.content);
        break;
      case Kind::Replace:
        current = replace_all(current, *step.pattern, step.content);
        break;
      case Kind::Strip:
        current = strip_white_space(current, step.strip_left, step.strip_right);
        break;
    }
  }
  return current;
}

}  // namespace dsv3
