// Copyright 2026 The mcdrop Authors.

#include "core/scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/conformal.h"

namespace mcdrop {
namespace {

std::vector<float> Points(const std::vector<float>& s, int64_t stride, int T,
                          int max_points) {
  std::vector<float> out(std::min(T, max_points), -1.0f);
  EXPECT_EQ(StratifiedPoints(s.data(), stride, T, max_points, out.data()),
            static_cast<int>(out.size()));
  return out;
}

TEST(StratifiedPointsTest, KeepsEverySampleUpToTheCap) {
  const std::vector<float> s = {3, 1, 2};
  EXPECT_EQ(Points(s, 1, 3, 8), (std::vector<float>{3, 1, 2}));
  // Strided: samples [T x B x D] of one row and output.
  const std::vector<float> strided = {5, 0, 4, 0, 6, 0};
  EXPECT_EQ(Points(strided, 2, 3, 3), (std::vector<float>{5, 4, 6}));
}

TEST(StratifiedPointsTest, PicksMidRanksBeyondTheCapNanLast) {
  std::vector<float> s(10);
  for (int t = 0; t < 10; ++t) s[t] = static_cast<float>(9 - t);  // 9..0
  // Ranks floor((i + 0.5) * 10 / 4) = 1, 3, 6, 8 of 0..9.
  EXPECT_EQ(Points(s, 1, 10, 4), (std::vector<float>{1, 3, 6, 8}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> p = Points({nan, 2, nan, 1, 0}, 1, 5, 4);
  EXPECT_EQ(p[0], 0);  // ranks 0, 1, 3, 4 of {0, 1, 2, nan, nan}
  EXPECT_EQ(p[1], 1);
  EXPECT_TRUE(std::isnan(p[2]) && std::isnan(p[3]));
}

TEST(MixtureTest, CdfAndDensityByHand) {
  const std::vector<float> p = {0.0f, 2.0f};
  // (Phi(1) + Phi(-1)) / 2 = 0.5 at y = 1 with s = 1.
  EXPECT_NEAR(MixtureCdfAt(p, 1.0, 1.0), 0.5, 1e-15);
  // At y = 0: (Phi(0) + Phi(-2)) / 2.
  const double phi_m2 = 0.5 * std::erfc(2.0 / std::sqrt(2.0));
  EXPECT_NEAR(MixtureCdfAt(p, 1.0, 0.0), (0.5 + phi_m2) / 2, 1e-15);
  // log((N(0;0,1) + N(0;2,1)) / 2).
  const double n0 = 1.0 / std::sqrt(2 * M_PI);
  const double n2 = std::exp(-2.0) / std::sqrt(2 * M_PI);
  EXPECT_NEAR(MixtureLogDensity(p, 1.0, 0.0), std::log((n0 + n2) / 2), 1e-14);
  // Far in the tail the log-density stays finite (log-sum-exp).
  const double far = MixtureLogDensity(p, 0.01, 1000.0);
  EXPECT_TRUE(std::isfinite(far));
  EXPECT_NEAR(far,
              -0.5 * std::pow(998.0 / 0.01, 2) - std::log(0.01) -
                  0.5 * std::log(2 * M_PI) - std::log(2.0),
              1e-3 * std::abs(far));
  // Without noise: the empirical CDF, ties counting one half.
  EXPECT_DOUBLE_EQ(MixtureCdfAt(p, 0.0, 2.0), 0.75);
  EXPECT_TRUE(std::isnan(MixtureCdfAt({}, 1.0, 0.0)));
  EXPECT_TRUE(std::isnan(MixtureLogDensity(p, 0.0, 0.0)));
}

TEST(MixtureTest, PitIsUniformForAnHonestPredictive) {
  // y drawn from the very mixture the points describe: PIT ~ U(0, 1).
  std::mt19937_64 rng(7);
  std::normal_distribution<double> n01;
  std::vector<int> bins(10, 0);
  const int kRows = 20000;
  for (int i = 0; i < kRows; ++i) {
    std::vector<float> pts(20);
    for (float& v : pts) v = static_cast<float>(3 * n01(rng));
    const double y = pts[rng() % pts.size()] + 0.5 * n01(rng);
    const double u = MixtureCdfAt(pts, 0.5, y);
    ++bins[std::min(9, static_cast<int>(u * 10))];
  }
  for (int b : bins) EXPECT_NEAR(b / double(kRows), 0.1, 0.01);
}

TEST(ClassificationScoresTest, BrierByHand) {
  EXPECT_NEAR(BrierScore({0.7, 0.2, 0.1}, 0), 0.09 + 0.04 + 0.01, 1e-15);
  EXPECT_NEAR(BrierScore({0.7, 0.2, 0.1}, 2), 0.49 + 0.04 + 0.81, 1e-15);
}

TEST(ClassificationScoresTest, EceByHand) {
  // Bin [0.9, 1.0]: confidences 0.95, 1.0 (one right): |1 - 1.95| = 0.95.
  // Bin [0.6, 0.7): 0.65, 0.65 both right: |2 - 1.3| = 0.7.
  const std::vector<double> conf = {0.95, 1.0, 0.65, 0.65};
  const std::vector<uint8_t> ok = {1, 0, 1, 1};
  EXPECT_NEAR(ExpectedCalibrationError(conf, ok, 10), (0.95 + 0.7) / 4, 1e-15);
  EXPECT_TRUE(std::isnan(ExpectedCalibrationError({}, {}, 10)));
  // NaN confidences (a prediction that overflowed) are left out.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NEAR(ExpectedCalibrationError({0.95, nan, 1.0, 0.65, 0.65},
                                       {1, 1, 0, 1, 1}, 10),
              (0.95 + 0.7) / 4, 1e-15);
  EXPECT_TRUE(std::isnan(ExpectedCalibrationError({nan}, {1}, 10)));
}

TEST(ClassificationScoresTest, AurocByHandWithTies) {
  // Positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5), (0.9>0.1),
  // (0.5=0.5: one half), (0.5>0.1) -> 3.5 / 4.
  EXPECT_DOUBLE_EQ(Auroc({0.9, 0.5, 0.5, 0.1}, {1, 1, 0, 0}), 0.875);
  EXPECT_DOUBLE_EQ(Auroc({0.1, 0.2}, {1, 0}), 0.0);
  EXPECT_TRUE(std::isnan(Auroc({0.1, 0.2}, {1, 1})));
  // NaN scores are left out.
  EXPECT_DOUBLE_EQ(
      Auroc({0.9, std::numeric_limits<double>::quiet_NaN(), 0.1}, {1, 0, 0}),
      1.0);
}

TEST(AdaptiveConformalTest, StepAndQuantile) {
  EXPECT_DOUBLE_EQ(AciStep(0.1, 0.1, 0.05, true), 0.1 - 0.05 * 0.9);
  EXPECT_DOUBLE_EQ(AciStep(0.1, 0.1, 0.05, false), 0.1 + 0.05 * 0.1);
  const std::vector<double> s = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(AdaptedQuantile(s, 0.5), ConformalQuantile(s, 0.5));
  EXPECT_EQ(AdaptedQuantile(s, 0.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(AdaptedQuantile(s, -0.2), std::numeric_limits<double>::infinity());
  EXPECT_EQ(AdaptedQuantile(s, 1.0), 0.0);
}

TEST(AdaptiveConformalTest, RecoversCoverageUnderAShift) {
  // Calibration scores of N(0, 1) residuals; then the residuals double.
  // The static 90% quantile covers about P(|2 z| <= 1.645) = 59%; ACI's
  // long-run miss rate is within (max(alpha) + rate) / (rate * n) of 10%
  // (Gibbs & Candes 2021, Proposition 4.1).
  std::mt19937_64 rng(11);
  std::normal_distribution<double> n01;
  std::vector<double> cal(999);
  for (double& v : cal) v = std::abs(n01(rng));
  std::sort(cal.begin(), cal.end());
  const double rate = 0.02;
  double alpha = 0.1;
  int misses = 0, static_misses = 0;
  const int kSteps = 20000;
  for (int i = 0; i < kSteps; ++i) {
    const double score = std::abs(2 * n01(rng));
    const bool miss = score > AdaptedQuantile(cal, alpha);
    misses += miss;
    static_misses += score > ConformalQuantile(cal, 0.9);
    alpha = AciStep(alpha, 0.1, rate, miss);
  }
  EXPECT_NEAR(static_misses / double(kSteps), 0.41, 0.02);
  EXPECT_NEAR(misses / double(kSteps), 0.1, (1.1 + rate) / (rate * kSteps));
}

}  // namespace
}  // namespace mcdrop
