// Copyright 2026 The mcdrop Authors.

#include "core/mask.h"

#include <Random123/philox.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace mcdrop {
namespace {

// Known-answer vectors of Philox-4x32-10 from Random123's kat_vectors.
TEST(PhiloxTest, KnownAnswers) {
  struct Kat {
    uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    r123::Philox4x32 rng;
    const auto r =
        rng({{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, {{k.key[0], k.key[1]}});
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(r.v[i], k.out[i]) << "Random123 word " << i;
    uint32_t c[4][8], o[4][8];
    for (int w = 0; w < 4; ++w) {
      for (int lane = 0; lane < 8; ++lane) c[w][lane] = k.ctr[w];
    }
    Philox4x32xN<8>(c, k.key[0], k.key[1], o);
    for (int w = 0; w < 4; ++w) {
      for (int lane = 0; lane < 8; ++lane) EXPECT_EQ(o[w][lane], k.out[w]);
    }
  }
}

TEST(PhiloxTest, VectorisedEqualsRandom123OnRandomCounters) {
  std::mt19937 gen(3);
  for (int trial = 0; trial < 1000; ++trial) {
    uint32_t c[4][16], o[4][16];
    const uint32_t k0 = gen(), k1 = gen();
    for (int w = 0; w < 4; ++w) {
      for (int lane = 0; lane < 16; ++lane) c[w][lane] = gen();
    }
    Philox4x32xN<16>(c, k0, k1, o);
    for (int lane = 0; lane < 16; ++lane) {
      r123::Philox4x32 rng;
      const auto r =
          rng({{c[0][lane], c[1][lane], c[2][lane], c[3][lane]}}, {{k0, k1}});
      for (int w = 0; w < 4; ++w) ASSERT_EQ(o[w][lane], r.v[w]);
    }
  }
}

// Apply() must make exactly the decisions of the one-at-a-time reference,
// including the rare refinement path, and scale kept units by 1/q.
TEST(DropoutMaskTest, ApplyMatchesKeptAndScales) {
  for (float p : {0.05f, 0.3f, 0.5f, 0.9f}) {
    const DropoutMask mask(0xDEADBEEFCAFEull, 3, p);
    const int units = 1003, cols = 171;  // ragged blocks and lanes
    std::vector<MaskColumn> columns(cols);
    for (int c = 0; c < cols; ++c)
      columns[c] = {static_cast<uint32_t>(c % 7),
                    static_cast<uint32_t>(c * 13)};
    std::vector<float> h(static_cast<size_t>(units) * cols, 2.0f);
    std::vector<uint8_t> scratch(DropoutMask::ScratchSize(units));
    mask.Apply(h.data(), units, units, columns.data(), cols, scratch.data());
    const float kept_value = 2.0f * static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0;
    for (int c = 0; c < cols; ++c) {
      for (int u = 0; u < units; ++u) {
        const bool k = mask.Kept(columns[c].row, columns[c].sample, u);
        ASSERT_EQ(h[c * units + u], k ? kept_value : 0.0f)
            << "p " << p << " c " << c << " u " << u;
        kept += k;
      }
    }
    // Keep frequency within 5 binomial standard errors of q.
    const double n = static_cast<double>(units) * cols, q = 1.0 - p;
    EXPECT_NEAR(kept / n, q, 5 * std::sqrt(q * (1 - q) / n)) << "p " << p;
  }
}

TEST(DropoutMaskTest, KeepFrequencyMatchesRateOverManyDraws) {
  const double p = 0.05;
  const DropoutMask mask(12345, 0, static_cast<float>(p));
  int64_t kept = 0, n = 0;
  for (uint32_t s = 0; s < 20000; ++s) {
    for (uint32_t u = 0; u < 50; ++u) {
      kept += mask.Kept(0, s, u);
      ++n;
    }
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 1 - p,
              5 * std::sqrt(p * (1 - p) / n));
}

TEST(DropoutMaskTest, ThresholdHasFullResolution) {
  // q = 1 - p to 32 bits, not to the 16 bits of the fast path.
  const DropoutMask mask(1, 0, 0.1f);
  EXPECT_EQ(mask.threshold(),
            static_cast<uint64_t>(std::llround(
                (1.0 - static_cast<double>(0.1f)) * 4294967296.0)));
}

TEST(DropoutMaskTest, DecisionsDependOnEveryCoordinate) {
  const DropoutMask a(7, 1, 0.5f), other_seed(8, 1, 0.5f),
      other_layer(7, 2, 0.5f);
  int same_seed = 0, same_layer = 0, same_row = 0, same_sample = 0;
  for (uint32_t u = 0; u < 256; ++u) {
    same_seed += a.Kept(0, 0, u) == other_seed.Kept(0, 0, u);
    same_layer += a.Kept(0, 0, u) == other_layer.Kept(0, 0, u);
    same_row += a.Kept(0, 0, u) == a.Kept(1, 0, u);
    same_sample += a.Kept(0, 0, u) == a.Kept(0, 1, u);
  }
  // Independent fair coins agree about half the time; identical streams 256.
  for (int same : {same_seed, same_layer, same_row, same_sample}) {
    EXPECT_GT(same, 90);
    EXPECT_LT(same, 166);
  }
}

}  // namespace
}  // namespace mcdrop
