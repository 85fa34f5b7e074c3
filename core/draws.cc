// Copyright 2026 The mcdrop Authors.

#include "core/draws.h"

#include <cmath>
#include <vector>

#include "core/ars.h"
#include "core/mask.h"

namespace mcdrop {
namespace {

constexpr double kTwoPi = 6.283185307179586;

double BoxMuller(uint32_t a, uint32_t b) {
  const double u1 = (static_cast<double>(a) + 0.5) * 0x1p-32;
  const double u2 = (static_cast<double>(b) + 0.5) * 0x1p-32;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

ars::Block Key(uint64_t seed) {
  return {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), 0, 0};
}

}  // namespace

void AddPredictiveNoise(uint64_t seed, double sigma, int T, int B, int D,
                        float* samples, uint32_t first_sample,
                        const std::vector<uint32_t>& row_ids) {
  const auto keys = ars::RoundKeys(Key(seed));
  const int pairs = (D + 1) / 2;
  std::vector<ars::Block> counters(pairs), blocks(pairs);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      for (int p = 0; p < pairs; ++p) {
        counters[p] = {static_cast<uint32_t>(p),
                       first_sample + static_cast<uint32_t>(t),
                       row_ids.empty() ? static_cast<uint32_t>(b) : row_ids[b],
                       kNoiseLayer};
      }
      GenerateArsBlocks(counters.data(), pairs, keys, blocks.data());
      float* y = samples + (static_cast<int64_t>(t) * B + b) * D;
      for (int d = 0; d < D; ++d) {
        const ars::Block& w = blocks[d / 2];
        const double z =
            d % 2 == 0 ? BoxMuller(w[0], w[1]) : BoxMuller(w[2], w[3]);
        y[d] = static_cast<float>(y[d] + sigma * z);
      }
    }
  }
}

double PredictiveNoiseReference(uint64_t seed, int t, int b, int d) {
  const ars::Block w =
      ars::Generate({static_cast<uint32_t>(d / 2), static_cast<uint32_t>(t),
                     static_cast<uint32_t>(b), kNoiseLayer},
                    ars::RoundKeys(Key(seed)));
  return d % 2 == 0 ? BoxMuller(w[0], w[1]) : BoxMuller(w[2], w[3]);
}

}  // namespace mcdrop
