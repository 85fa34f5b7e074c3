// Copyright 2026 The mcdrop Authors.

#include "core/mask.h"

#include <Random123/ars.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace mcdrop {
namespace {

// The first-stage byte of a unit as mask.h documents it: byte unit % 16 of
// the block with counter (unit / 16, sample, row, layer), key (seed, 0, 0).
uint32_t FirstStageByte(uint64_t seed, uint32_t layer, const MaskColumn& col,
                        int64_t unit) {
  const ars::Block r = ars::Generate(
      {static_cast<uint32_t>(unit / 16), col.sample, col.row, layer},
      ars::RoundKeys({static_cast<uint32_t>(seed),
                      static_cast<uint32_t>(seed >> 32), 0, 0}));
  return (r[(unit % 16) / 4] >> (8 * (unit % 4))) & 0xFF;
}

// The portable ARS equals Random123's reference ars4x32_R(7, ...), which
// runs on the AES instructions, on random counters and keys.
TEST(ArsTest, PortableEqualsRandom123) {
#if R123_USE_AES_NI
  if (!ars::HaveAesNi()) GTEST_SKIP() << "this CPU has no AES instructions";
  std::mt19937 gen32(3);
  auto gen = [&] { return static_cast<uint32_t>(gen32()); };
  for (int trial = 0; trial < 2000; ++trial) {
    const ars::Block ctr = {gen(), gen(), gen(), gen()};
    const ars::Block key = {gen(), gen(), trial % 2 ? gen() : 0u,
                            trial % 3 ? gen() : 0u};
    const r123::ARS4x32_R<7>::ctr_type c = {{ctr[0], ctr[1], ctr[2], ctr[3]}};
    const r123::ARS4x32_R<7>::ukey_type k = {{key[0], key[1], key[2], key[3]}};
    const auto want = r123::ARS4x32_R<7>()(c, k);
    const ars::Block got = ars::Generate(ctr, ars::RoundKeys(key));
    for (int w = 0; w < 4; ++w) ASSERT_EQ(got[w], want.v[w]) << "word " << w;
  }
#else
  GTEST_SKIP() << "Random123's ARS needs a build with AES instructions";
#endif
}

// Known answers of ars4x32_R(7, ctr, key) from Random123 (printed on an
// AES-NI machine), so the portable path is pinned on CPUs without AES too.
TEST(ArsTest, KnownAnswers) {
  struct Kat {
    ars::Block ctr, key, out;
  };
  const Kat kats[] = {
      {{0, 0, 0, 0},
       {0, 0, 0, 0},
       {0xdacf61ff, 0xc45798f3, 0x113c7eeb, 0x101e27f3}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xfbaaff1f, 0xbb547ef9, 0x13d8cd78, 0x7aaa969b}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0, 0, 0},
       {0xb330966a, 0xd599daa5, 0xca557885, 0xb5de9cff}},
  };
  for (const Kat& k : kats) {
    const ars::Block got = ars::Generate(k.ctr, ars::RoundKeys(k.key));
    for (int w = 0; w < 4; ++w) EXPECT_EQ(got[w], k.out[w]) << "word " << w;
  }
}

// Columns with ragged blocks and lanes, and inputs of both signs.
struct Case {
  std::vector<MaskColumn> columns;
  std::vector<float> h;
};

Case MakeCase(int64_t ld, int cols) {
  Case c;
  c.columns.resize(cols);
  for (int i = 0; i < cols; ++i)
    c.columns[i] = {static_cast<uint32_t>(i % 7),
                    static_cast<uint32_t>(i * 13)};
  c.h.resize(static_cast<size_t>(ld) * cols);
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (float& v : c.h) v = u(gen);
  return c;
}

// Apply() must make exactly the decisions of the one-at-a-time reference,
// including the refinement of ties, scale kept units by 1/q, leave the rows
// between columns unchanged, and equal the portable path bit for bit.
TEST(DropoutMaskTest, ApplyMatchesKeptAndScales) {
  for (float p : {0.05f, 0.3f, 0.5f, 0.9f}) {
    for (int units : {1, 7, 8, 13, 16, 50, 100, 129, 1003}) {
      for (int64_t ld :
           {static_cast<int64_t>(units), static_cast<int64_t>(units) + 3}) {
        constexpr uint64_t kSeed = 0xDEADBEEFCAFEull;
        const DropoutMask mask(kSeed, 3, p);
        const int cols = units > 100 ? 171 : 1009;
        const Case in = MakeCase(ld, cols);
        std::vector<float> h = in.h, portable = in.h;
        std::vector<uint8_t> scratch(DropoutMask::ScratchSize(units, cols));
        mask.Apply(h.data(), ld, units, in.columns.data(), cols,
                   scratch.data());
        mask.Apply(portable.data(), ld, units, in.columns.data(), cols,
                   scratch.data(), DropoutMask::Generator::kPortable);
        const float scale = static_cast<float>(1.0 / (1.0 - p));
        int64_t kept = 0, ties = 0;
        for (int c = 0; c < cols; ++c) {
          for (int64_t u = 0; u < ld; ++u) {
            const size_t i = static_cast<size_t>(c * ld + u);
            ASSERT_EQ(std::memcmp(&h[i], &portable[i], 4), 0)
                << "p " << p << " units " << units << " c " << c << " u " << u;
            if (u >= units) {
              ASSERT_EQ(h[i], in.h[i]) << "row between columns changed";
              continue;
            }
            const bool k = mask.Kept(in.columns[c].row, in.columns[c].sample,
                                     static_cast<uint32_t>(u));
            ASSERT_EQ(h[i], k ? in.h[i] * scale : 0.0f)
                << "p " << p << " units " << units << " c " << c << " u " << u;
            kept += k;
            ties += FirstStageByte(kSeed, 3, in.columns[c], u) ==
                    (mask.threshold() >> 24);
          }
        }
        // Keep frequency within 5 binomial standard errors of q.
        const double n = static_cast<double>(units) * cols, q = 1.0 - p;
        EXPECT_NEAR(kept / n, q, 5 * std::sqrt(q * (1 - q) / n)) << "p " << p;
        if (n > 100000 && (mask.threshold() & 0xFFFFFF) != 0) {
          EXPECT_GT(ties, 0) << "the refinement path was not exercised";
        }
      }
    }
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
  // q = 1 - p to 32 bits, not to the 8 bits of the first stage.
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
