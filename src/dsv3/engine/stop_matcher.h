// Stop strings over streamed text: text is released only once it can no longer be the start of a
// stop string, so a stop string split across tokens is still caught and never emitted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Takes newly decoded text; returns what is now safe to emit. When a stop string appears, returns
  // the text before it, and stopped() becomes true; later text is ignored.
  std::string push(std::string_view text);
  // The text held back at the end of generation (no stop string came).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace dsv3
