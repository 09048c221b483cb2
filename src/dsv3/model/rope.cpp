#include "dsv3/model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv3 {
namespace {

// YaRN's attention temperature term: 0.1 * mscale * ln(s) + 1 for s > 1, else 1.
double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// The (fractional) pair index at which a frequency completes `rotations` turns over `context` positions.
double correction_dim(double rotations, int64_t dim, double base, double context) {
  return double(dim) * std::log(context / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

RopeFrequencies rope_frequencies(const ModelConfig& config) {
  const int64_t dim = config.qk_rope_head_dim;
  const double base = config.rope_theta;
  RopeFrequencies out;
  out.inv_freq.resize(size_t(dim / 2));
  std::vector<float> pos_freq(size_t(dim / 2)), extrapolation(size_t(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    // base^(2i/dim) in float32, as torch computes pos_freqs.
    pos_freq[size_t(i)] = float(std::pow(base, double(float(2 * i) / float(dim))));
    extrapolation[size_t(i)] = 1.0f / pos_freq[size_t(i)];
  }
  if (!config.rope_scaling) {
    out.inv_freq = extrapolation;
    return out;
  }

  const YarnScaling& yarn = *config.rope_scaling;
  // transformers 5 uses the config's `factor` throughout, even where it differs from
  // max_position_embeddings / original_max_position_embeddings (some earlier versions derived it).
  const double context = double(yarn.original_max_position_embeddings);
  const double factor = yarn.factor;
  if (yarn.attention_factor) {
    out.attention_factor = float(*yarn.attention_factor);
  } else if (yarn.mscale != 0.0 && yarn.mscale_all_dim != 0.0) {
    out.attention_factor = float(yarn_mscale(factor, yarn.mscale) / yarn_mscale(factor, yarn.mscale_all_dim));
  } else {
    out.attention_factor = float(yarn_mscale(factor, 1.0));
  }

  double low = correction_dim(yarn.beta_fast, dim, base, context);
  double high = correction_dim(yarn.beta_slow, dim, base, context);
  if (yarn.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  for (int64_t i = 0; i < dim / 2; ++i) {
    // Pairs below `low` keep their frequency (extrapolate), above `high` are divided by the factor.
    const float ramp = std::clamp(float((float(i) - low) / (high - low)), 0.0f, 1.0f);
    const float keep = 1.0f - ramp;
    const float interpolation = 1.0f / (float(factor) * pos_freq[size_t(i)]);
    out.inv_freq[size_t(i)] = interpolation * (1.0f - keep) + extrapolation[size_t(i)] * keep;
  }
  return out;
}

float mla_softmax_scale(const ModelConfig& config) {
  double scale = 1.0 / std::sqrt(double(config.qk_head_dim()));
  if (config.rope_scaling && config.rope_scaling->mscale_all_dim != 0.0) {
    const double m = yarn_mscale(config.rope_scaling->factor, config.rope_scaling->mscale_all_dim);
    scale *= m * m;
  }
  return float(scale);
}

}  // namespace dsv3
