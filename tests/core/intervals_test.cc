// Copyright 2026 The mcdrop Authors.

#include "core/intervals.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace mcdrop {
namespace {

TEST(IntervalsTest, EmpiricalQuantilesInterpolateLikeNumpy) {
  // numpy.percentile([1, 2, 3, 4, 5], [5, 95]) = [1.2, 4.8]
  const float s[5] = {3, 1, 5, 2, 4};
  IntervalScratch scratch;
  const IntervalBounds b = PredictiveInterval(s, 1, 5, 0.0, 0.9, &scratch);
  EXPECT_NEAR(b.lower, 1.2, 1e-12);
  EXPECT_NEAR(b.upper, 4.8, 1e-12);
}

TEST(IntervalsTest, StrideSelectsOneOutput) {
  const float s[6] = {1, 100, 2, 200, 3, 300};  // [T=3 x D=2]
  IntervalScratch scratch;
  const IntervalBounds b = PredictiveInterval(s + 1, 2, 3, 0.0, 0.5, &scratch);
  EXPECT_NEAR(b.lower, 150, 1e-9);
  EXPECT_NEAR(b.upper, 250, 1e-9);
}

TEST(IntervalsTest, OneSampleWithNoiseIsTheGaussianInterval) {
  const float s[1] = {10.0f};
  IntervalScratch scratch;
  const IntervalBounds b = PredictiveInterval(s, 1, 1, 4.0, 0.95, &scratch);
  EXPECT_NEAR(b.lower, 10 - 1.959963984540054 * 2, 1e-8);
  EXPECT_NEAR(b.upper, 10 + 1.959963984540054 * 2, 1e-8);
}

TEST(IntervalsTest, NoiseWidenedBoundsHitTheMixtureQuantiles) {
  std::mt19937 rng(1);
  std::gamma_distribution<float> skewed(2.0f, 1.5f);
  std::vector<float> s(1000);
  for (float& v : s) v = skewed(rng);
  IntervalScratch scratch;
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

// The quantile of the exact mixture CDF by 200 bisection steps: the brute
// force the fast clustered search is checked against.
double BruteForceQuantile(const std::vector<double>& ys, double s, double q) {
  double lo = *std::min_element(ys.begin(), ys.end()) - 20 * s;
  double hi = *std::max_element(ys.begin(), ys.end()) + 20 * s;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (MixtureCdf(ys, s, mid) < q ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double Density(const std::vector<double>& ys, double s, double z) {
  double sum = 0;
  for (double y : ys) sum += std::exp(-0.5 * (z - y) * (z - y) / (s * s));
  return sum / (ys.size() * s * std::sqrt(2 * M_PI));
}

struct Case {
  const char* name;
  int T;
  double spread;  // of the samples, in units of s = 1
  bool bimodal;
};

class MixtureQuantileTest : public ::testing::TestWithParam<Case> {};

TEST_P(MixtureQuantileTest, MatchesTheBruteForceReference) {
  const Case c = GetParam();
  std::mt19937 rng(c.T);
  std::normal_distribution<float> normal;
  std::vector<float> samples(c.T);
  for (int t = 0; t < c.T; ++t) {
    const float noise = static_cast<float>(c.spread) * normal(rng);
    samples[t] = 50.0f + noise + (c.bimodal && t % 3 == 0 ? 8.0f : 0.0f);
  }
  const std::vector<double> ys(samples.begin(), samples.end());
  const std::vector<double> levels = {0.001, 0.5, 0.8, 0.9, 0.95, 0.999};
  std::vector<IntervalBounds> got(levels.size());
  IntervalScratch scratch;
  for (double s : {0.05, 1.0, 20.0}) {
    PredictiveIntervals(samples.data(), 1, c.T, s * s, levels, got.data(),
                        &scratch);
    for (size_t i = 0; i < levels.size(); ++i) {
      const double a = (1 - levels[i]) / 2, b = (1 + levels[i]) / 2;
      EXPECT_NEAR(MixtureCdf(ys, s, got[i].lower), a, 1e-9)
          << c.name << " s=" << s << " level " << levels[i];
      EXPECT_NEAR(MixtureCdf(ys, s, got[i].upper), b, 1e-9)
          << c.name << " s=" << s << " level " << levels[i];
      // A CDF error e moves the quantile by e / density.
      for (auto [z, q] : {std::pair{got[i].lower, a}, {got[i].upper, b}}) {
        const double ref = BruteForceQuantile(ys, s, q);
        EXPECT_NEAR(z, ref, 2e-9 / Density(ys, s, ref) + 1e-12 * (ref + s))
            << c.name << " s=" << s << " q=" << q;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MixtureQuantileTest,
                         ::testing::Values(Case{"one", 1, 1.0, false},
                                           Case{"two", 2, 1.0, false},
                                           Case{"seven", 7, 3.0, true},
                                           Case{"equal", 500, 0.0, false},
                                           Case{"narrow", 3000, 0.001, false},
                                           Case{"comparable", 3000, 1.0, false},
                                           Case{"wide", 3000, 100.0, false},
                                           Case{"bimodal", 3000, 0.5, true}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(IntervalsTest, TinyNoiseAndNonFiniteSamples) {
  std::vector<float> s = {1.0f, 2.0f, 3.0f, 4.0f};
  IntervalScratch scratch;
  // s = 1e-150: powers of s would underflow; the bounds are the mixture's
  // (here, to double precision, the samples' own quantiles).
  const IntervalBounds tiny =
      PredictiveInterval(s.data(), 1, 4, 1e-300, 0.5, &scratch);
  EXPECT_TRUE(std::isfinite(tiny.lower) && std::isfinite(tiny.upper));
  EXPECT_GE(tiny.lower, 1.0);
  EXPECT_LE(tiny.upper, 4.0);
  for (float bad : {std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    s[2] = bad;
    for (double noise : {0.0, 1.0}) {
      const IntervalBounds b =
          PredictiveInterval(s.data(), 1, 4, noise, 0.9, &scratch);
      EXPECT_TRUE(std::isnan(b.lower) && std::isnan(b.upper)) << bad;
    }
  }
}

TEST(IntervalsTest, ManyLevelsAtOnceEqualOneAtATime) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(2.0f, 1.5f);
  std::vector<float> s(2000);
  for (float& v : s) v = normal(rng);
  const std::vector<double> levels = {0.5, 0.9, 0.95};
  std::vector<IntervalBounds> all(levels.size());
  IntervalScratch scratch;
  PredictiveIntervals(s.data(), 1, 2000, 0.7, levels, all.data(), &scratch);
  for (size_t i = 0; i < levels.size(); ++i) {
    const IntervalBounds one =
        PredictiveInterval(s.data(), 1, 2000, 0.7, levels[i], &scratch);
    EXPECT_EQ(one.lower, all[i].lower);
    EXPECT_EQ(one.upper, all[i].upper);
  }
}

TEST(MixtureCdfTest, IsUniformAtDrawsFromTheMixture) {
  // y drawn from the very mixture the points describe: PIT ~ U(0, 1).
  std::mt19937_64 rng(7);
  std::normal_distribution<double> n01;
  std::vector<int> bins(10, 0);
  const int kRows = 20000;
  for (int i = 0; i < kRows; ++i) {
    std::vector<double> pts(20);
    for (double& v : pts) v = 3 * n01(rng);
    const double y = pts[rng() % pts.size()] + 0.5 * n01(rng);
    const double u = MixtureCdf(pts, 0.5, y);
    ++bins[std::min(9, static_cast<int>(u * 10))];
  }
  for (int b : bins) EXPECT_NEAR(b / double(kRows), 0.1, 0.01);
}

}  // namespace
}  // namespace mcdrop
