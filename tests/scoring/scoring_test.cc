// Copyright 2026 The mcdrop Authors.

#include "scoring/scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace mcdrop {
namespace {

TEST(SampleLogLikelihoodTest, MatchesTheFormula) {
  // Two samples, one output: ll = log(mean_t N(y; y_t, 1/tau)).
  const float samples[2] = {1.0f, 3.0f};
  const float y = 2.5f;
  const double tau = 2.0;
  const double want = std::log(
      0.5 * (std::sqrt(tau / (2 * M_PI)) * std::exp(-0.5 * tau * 1.5 * 1.5) +
             std::sqrt(tau / (2 * M_PI)) * std::exp(-0.5 * tau * 0.5 * 0.5)));
  EXPECT_NEAR(SampleLogLikelihood(samples, 1, 2, 1, &y, tau), want, 1e-12);
}

TEST(SampleLogLikelihoodTest, ReadsOneRowOfTheTBDLayout) {
  // T = 2, B = 2, D = 2: row 1's samples are at 2..3 and 6..7. Row 0's values
  // are far off, so reading them would change the answer.
  const float samples[8] = {100, 100, 1, 2, -100, -100, 3, 4};
  const float y[2] = {2, 3};
  const double tau = 0.5;
  // Sample 0 of row 1 is at squared distance 2, sample 1 at 2 too.
  const double want = -0.5 * tau * 2 - std::log(2 * M_PI) + std::log(tau);
  EXPECT_NEAR(SampleLogLikelihood(samples + 2, 4, 2, 2, y, tau), want, 1e-12);
}

TEST(SampleLogLikelihoodTest, StableFarFromEverySample) {
  // exp(-tau/2 * 1e6) underflows; the logsumexp form does not.
  const float samples[1] = {0.0f};
  const float y = 1000.0f;
  const double ll = SampleLogLikelihood(samples, 1, 1, 1, &y, 1.0);
  EXPECT_NEAR(ll, -0.5e6 - 0.5 * std::log(2 * M_PI), 1e-6);
}

TEST(SquaredErrorTest, RootMeanOfSquares) {
  SquaredError e;
  EXPECT_EQ(e.Rmse(), 0.0);
  e.Add(1, 2);
  e.Add(3, 0);
  e.Add(-1, -1);
  EXPECT_EQ(e.count(), 3);
  EXPECT_DOUBLE_EQ(e.Rmse(), std::sqrt((1.0 + 9.0 + 0.0) / 3));
}

TEST(IntervalCoverageTest, CountsTargetsInsideIncludingTheBounds) {
  IntervalCoverage c;
  EXPECT_EQ(c.Coverage(), 0.0);
  EXPECT_EQ(c.MeanWidth(), 0.0);
  c.Add(1.0, 0.0, 2.0);  // inside
  c.Add(2.0, 0.0, 2.0);  // on the upper bound: covered
  c.Add(3.0, 0.0, 2.0);  // outside
  c.Add(-1.0, 0.0, 6.0);
  EXPECT_EQ(c.count(), 4);
  EXPECT_DOUBLE_EQ(c.Coverage(), 0.5);
  EXPECT_DOUBLE_EQ(c.MeanWidth(), (2.0 + 2.0 + 2.0 + 6.0) / 4);
}

TEST(CalibrationBinsTest, HandComputedError) {
  CalibrationBins bins(15);
  EXPECT_EQ(bins.ExpectedCalibrationError(), 0.0);
  bins.Add(0.9, true);   // bin 13
  bins.Add(0.8, false);  // bin 12
  bins.Add(0.6, true);   // bin 9
  EXPECT_EQ(bins.count(), 3);
  EXPECT_NEAR(bins.ExpectedCalibrationError(),
              (std::abs(1 - 0.9) + std::abs(0 - 0.8) + std::abs(1 - 0.6)) / 3,
              1e-12);
  // Two predictions in one bin: |accuracy - mean confidence| of the bin.
  CalibrationBins one(1);
  one.Add(0.7, true);
  one.Add(0.5, false);
  EXPECT_NEAR(one.ExpectedCalibrationError(), std::abs(0.5 - 0.6), 1e-12);
}

TEST(CalibrationBinsTest, EveryDoubleFallsIntoABin) {
  CalibrationBins bins(15);
  EXPECT_EQ(bins.BinOf(0.0), 0);
  EXPECT_EQ(bins.BinOf(1.0), 14);
  EXPECT_EQ(bins.BinOf(0.999), 14);
  EXPECT_EQ(bins.BinOf(0.5), 7);
  EXPECT_EQ(bins.BinOf(-3.0), 0);
  EXPECT_EQ(bins.BinOf(1e300), 14);
  EXPECT_EQ(bins.BinOf(std::numeric_limits<double>::infinity()), 14);
  EXPECT_EQ(bins.BinOf(-std::numeric_limits<double>::infinity()), 0);
  EXPECT_EQ(bins.BinOf(std::nan("")), 0);
  bins.Add(std::nan(""), true);
  bins.Add(1e300, false);
  EXPECT_EQ(bins.count(), 2);
  EXPECT_EQ(CalibrationBins(0).BinOf(0.7), 0);  // taken as one bin
}

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

TEST(BrierScoreTest, BrierByHand) {
  EXPECT_NEAR(BrierScore(std::vector<double>{0.7, 0.2, 0.1}.data(), 3, 0),
              0.09 + 0.04 + 0.01, 1e-15);
  EXPECT_NEAR(BrierScore(std::vector<double>{0.7, 0.2, 0.1}.data(), 3, 2),
              0.49 + 0.04 + 0.81, 1e-15);
}

TEST(AurocTest, AurocByHandWithTies) {
  // Positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5), (0.9>0.1),
  // (0.5=0.5: one half), (0.5>0.1) -> 3.5 / 4.
  EXPECT_DOUBLE_EQ(
      Auroc({0.9, 0.5, 0.5, 0.1}, std::vector<uint8_t>{1, 1, 0, 0}), 0.875);
  EXPECT_DOUBLE_EQ(Auroc({0.1, 0.2}, std::vector<uint8_t>{1, 0}), 0.0);
  EXPECT_TRUE(std::isnan(Auroc({0.1, 0.2}, std::vector<uint8_t>{1, 1})));
  // NaN scores are left out.
  EXPECT_DOUBLE_EQ(Auroc({0.9, std::numeric_limits<double>::quiet_NaN(), 0.1},
                         std::vector<uint8_t>{1, 0, 0}),
                   1.0);
}

}  // namespace
}  // namespace mcdrop
