// Copyright 2026 The mcdrop Authors.

#include "core/intervals.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace mcdrop {
namespace {

TEST(IntervalsTest, EmpiricalQuantilesInterpolateLikeNumpy) {
  // numpy.percentile([1, 2, 3, 4, 5], [5, 95]) = [1.2, 4.8]
  const float s[5] = {3, 1, 5, 2, 4};
  std::vector<double> scratch;
  const IntervalBounds b = PredictiveInterval(s, 1, 5, 0.0, 0.9, &scratch);
  EXPECT_NEAR(b.lower, 1.2, 1e-12);
  EXPECT_NEAR(b.upper, 4.8, 1e-12);
}

TEST(IntervalsTest, StrideSelectsOneOutput) {
  const float s[6] = {1, 100, 2, 200, 3, 300};  // [T=3 x D=2]
  std::vector<double> scratch;
  const IntervalBounds b = PredictiveInterval(s + 1, 2, 3, 0.0, 0.5, &scratch);
  EXPECT_NEAR(b.lower, 150, 1e-9);
  EXPECT_NEAR(b.upper, 250, 1e-9);
}

TEST(IntervalsTest, OneSampleWithNoiseIsTheGaussianInterval) {
  const float s[1] = {10.0f};
  std::vector<double> scratch;
  const IntervalBounds b = PredictiveInterval(s, 1, 1, 4.0, 0.95, &scratch);
  EXPECT_NEAR(b.lower, 10 - 1.959963984540054 * 2, 1e-8);
  EXPECT_NEAR(b.upper, 10 + 1.959963984540054 * 2, 1e-8);
}

TEST(IntervalsTest, NoiseWidenedBoundsHitTheMixtureQuantiles) {
  std::mt19937 rng(1);
  std::gamma_distribution<float> skewed(2.0f, 1.5f);
  std::vector<float> s(1000);
  for (float& v : s) v = skewed(rng);
  std::vector<double> scratch;
  for (double level : {0.5, 0.8, 0.9, 0.95, 0.99}) {
    for (double noise : {0.01, 0.5, 4.0}) {
      const IntervalBounds b =
          PredictiveInterval(s.data(), 1, 1000, noise, level, &scratch);
      std::vector<double> ys(s.begin(), s.end());
      std::sort(ys.begin(), ys.end());
      EXPECT_NEAR(MixtureCdf(ys, std::sqrt(noise), b.lower), (1 - level) / 2,
                  1e-9);
      EXPECT_NEAR(MixtureCdf(ys, std::sqrt(noise), b.upper), (1 + level) / 2,
                  1e-9);
      // Noise as large as the samples' spread widens the interval (a small
      // one need not: smoothing a skewed sample can move a tail quantile in).
      if (noise >= 4.0) {
        const IntervalBounds e =
            PredictiveInterval(s.data(), 1, 1000, 0.0, level, &scratch);
        EXPECT_LT(b.lower, e.lower);
        EXPECT_GT(b.upper, e.upper);
      }
    }
  }
}

}  // namespace
}  // namespace mcdrop
