// What a client asks the engine for, and what the engine reports back as it generates.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dsv3/engine/sampler.h"

namespace dsv3 {

struct StopCriteria {
  int64_t max_tokens = 256;               // generated tokens at most
  std::vector<std::string> stop;          // stop strings: matched across token boundaries, never emitted
  std::vector<int32_t> stop_token_ids;    // besides the model's eos
  bool ignore_eos = false;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  StopCriteria stop;
  int32_t top_logprobs = -1;  // -1: no logprobs; 0: the chosen token's; n > 0: and the n most likely
  // Test hook (serve --test-hooks): emitted in order instead of sampled tokens, then sampling resumes.
  std::vector<int32_t> forced_tokens;
};

enum class FinishReason { Stop, Length, Cancelled, Error };

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served from the prefix cache
};

// One report for a request, delivered in order from the engine's thread. A request gets at least
// one; the last one has `finish` set.
struct GenerationUpdate {
  std::string text;                      // newly final text: whole UTF-8 characters, stop strings cut
  std::vector<int32_t> tokens;           // tokens accepted since the last update
  std::vector<TokenLogprob> logprobs;    // one a token in `tokens` when requested
  std::optional<FinishReason> finish;
  std::string error;                     // with FinishReason::Error
  Usage usage;                           // counts so far
  double time_to_first_token_s = 0.0;    // set once the first token exists
};

using UpdateCallback = std::function<void(const GenerationUpdate&)>;

}  // namespace dsv3
