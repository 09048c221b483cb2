// A token drawn from softmax(logits / T) by the Gumbel-max trick (Gumbel 1954; Maddison, Tarlow and
// Minka 2014, "A* Sampling", section 2): argmax_i (logit_i / T + G_i), with G_i independent standard
// Gumbel variables, is such a draw. The noise here is a pure function of a draw's key and the token
// id, so a backend picks the token in one pass over logits it never has to hand over, and every
// backend picks the same token for the same key (up to float rounding). Host and device code.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define DSV3_HOST_DEVICE __host__ __device__
#else
#define DSV3_HOST_DEVICE
#endif

namespace dsv3 {

// SplitMix64's output function (Steele, Lea and Flood 2014): a bijection whose outputs pass as random.
DSV3_HOST_DEVICE inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The key of the n-th token a request with this seed draws.
DSV3_HOST_DEVICE inline uint64_t draw_key(uint64_t seed, uint64_t n) { return mix64(seed ^ mix64(n)); }

// logit / T + G(key, token): the token of the largest one is the draw.
DSV3_HOST_DEVICE inline double perturbed_logit(float logit, float inv_temperature, uint64_t key, int64_t token) {
  const double u = (double(mix64(key ^ mix64(uint64_t(token))) >> 11) + 0.5) * 0x1p-53;  // in (0, 1)
  return double(logit) * inv_temperature - log(-log(u));
}

}  // namespace dsv3
