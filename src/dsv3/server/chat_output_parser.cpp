#include "dsv3/server/chat_output_parser.h"

#include <algorithm>

namespace dsv3 {
namespace {

const std::string kThinkOpen = "<think>";
const std::string kThinkClose = "</think>";
const std::string kToolCallsBegin = "<｜tool▁calls▁begin｜>";
const std::string kToolCallBegin = "<｜tool▁call▁begin｜>";
const std::string kToolCallEnd = "<｜tool▁call▁end｜>";
const std::string kToolSep = "<｜tool▁sep｜>";

// Length of the longest tail of `text` that is a proper prefix of `marker`.
size_t partial_marker_tail(const std::string& text, const std::string& marker) {
  for (size_t n = std::min(marker.size() - 1, text.size()); n > 0; --n)
    if (text.compare(text.size() - n, n, marker, 0, n) == 0) return n;
  return 0;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

ChatOutputParser::ChatOutputParser(bool in_reasoning) : state_(in_reasoning ? State::Reasoning : State::Start) {}

ChatDelta ChatOutputParser::push(std::string_view text) {
  pending_ += text;
  return drain(false);
}

ChatDelta ChatOutputParser::finish() {
  ChatDelta d = drain(true);
  if (state_ == State::ToolCalls) parse_tool_calls();
  return d;
}

ChatDelta ChatOutputParser::drain(bool final) {
  ChatDelta out;
  for (;;) {
    if (state_ == State::Start) {
      // Output that opens with <think> (after white space) is reasoning.
      const std::string lead = pending_.substr(0, pending_.find_first_not_of(" \t\r\n"));
      const std::string rest = pending_.substr(lead.size());
      if (rest.rfind(kThinkOpen, 0) == 0) {
        pending_ = rest.substr(kThinkOpen.size());
        state_ = State::Reasoning;
        continue;
      }
      if (!final && kThinkOpen.rfind(rest, 0) == 0) return out;  // could still become <think>
      state_ = State::Content;
      continue;
    }
    if (state_ == State::Reasoning) {
      const size_t close = pending_.find(kThinkClose);
      if (close != std::string::npos) {
        out.reasoning += pending_.substr(0, close);
        pending_ = pending_.substr(close + kThinkClose.size());
        state_ = State::Content;
        continue;
      }
      const size_t keep = final ? 0 : partial_marker_tail(pending_, kThinkClose);
      out.reasoning += pending_.substr(0, pending_.size() - keep);
      pending_.erase(0, pending_.size() - keep);
      return out;
    }
    if (state_ == State::Content) {
      const size_t begin = pending_.find(kToolCallsBegin);
      if (begin != std::string::npos) {
        out.content += pending_.substr(0, begin);
        tool_text_ = pending_.substr(begin + kToolCallsBegin.size());
        pending_.clear();
        state_ = State::ToolCalls;
        return out;
      }
      const size_t keep = final ? 0 : partial_marker_tail(pending_, kToolCallsBegin);
      out.content += pending_.substr(0, pending_.size() - keep);
      pending_.erase(0, pending_.size() - keep);
      return out;
    }
    tool_text_ += pending_;  // State::ToolCalls: collected, parsed at the end
    pending_.clear();
    return out;
  }
}

void ChatOutputParser::parse_tool_calls() {
  size_t pos = 0;
  while ((pos = tool_text_.find(kToolCallBegin, pos)) != std::string::npos) {
    pos += kToolCallBegin.size();
    const size_t sep = tool_text_.find(kToolSep, pos);
    const size_t end = std::min(tool_text_.find(kToolCallEnd, pos), tool_text_.size());
    if (sep == std::string::npos || sep > end) break;
    ToolCall call;
    call.type = trim(tool_text_.substr(pos, sep - pos));
    std::string body = tool_text_.substr(sep + kToolSep.size(), end - sep - kToolSep.size());
    const size_t newline = body.find('\n');
    call.name = trim(body.substr(0, newline));
    std::string args = newline == std::string::npos ? "" : body.substr(newline + 1);
    // The arguments sit in a ```json fence.
    if (const size_t fence = args.find("```json"); fence != std::string::npos) args = args.substr(fence + 7);
    if (const size_t close = args.rfind("```"); close != std::string::npos) args = args.substr(0, close);
    call.arguments = trim(args);
    if (call.type.empty()) call.type = "function";
    tool_calls_.push_back(std::move(call));
    pos = end;
  }
}

}  // namespace dsv3
