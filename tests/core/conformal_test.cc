// Copyright 2026 The mcdrop Authors.

#include "core/conformal.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/calibrate.h"
#include "tests/testing/models.h"

namespace mcdrop {
namespace {

using ::mcdrop::testing::MustCreate;
using ::mcdrop::testing::RandomInputs;
using ::mcdrop::testing::RandomSpec;

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(ConformalQuantileTest, IsTheCeilNPlusOneLevelthSmallest) {
  const std::vector<double> s = {0.1, 0.2, 0.3, 0.4, 0.5,
                                 0.6, 0.7, 0.8, 0.9, 1.0};  // n = 10
  EXPECT_EQ(ConformalQuantile(s, 0.5), 0.6);                // ceil(5.5) = 6
  EXPECT_EQ(ConformalQuantile(s, 0.8), 0.9);                // ceil(8.8) = 9
  EXPECT_EQ(ConformalQuantile(s, 0.9), 1.0);                // ceil(9.9) = 10
  EXPECT_EQ(ConformalQuantile(s, 0.95), kInf);  // ceil(10.45) = 11 > n
  EXPECT_EQ(ConformalQuantile(s, 0.01), 0.1);   // ceil(0.11) = 1
  std::vector<double> n19(19);
  for (int i = 0; i < 19; ++i) n19[i] = i;
  // (19 + 1) * 0.95 = 19 exactly: the 19th, not "+infinity".
  EXPECT_EQ(ConformalQuantile(n19, 0.95), 18.0);
  EXPECT_EQ(ConformalQuantile(n19, 0.96), kInf);
  EXPECT_DOUBLE_EQ(MaxFiniteLevel(19), 0.95);
  // Outside the contract: the conservative answer, never a bad read.
  EXPECT_EQ(ConformalQuantile({}, 0.5), kInf);
  EXPECT_EQ(ConformalQuantile(s, std::nan("")), kInf);
  EXPECT_EQ(ConformalQuantile(s, 0.0), kInf);
  EXPECT_EQ(ConformalQuantile(s, 1.0), kInf);
}

// Exchangeable data and a model whose std is wrong by a factor that varies
// with the input: the calibrated interval still covers ceil((n+1)a)/(n+1) of
// new rows on average over calibration draws (with n = 9 the finite-sample
// correction is large: a quantile without it would cover visibly less).
TEST(ConformalQuantileTest, CoversAtLeastTheLevelOnExchangeableData) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.2, 3.0);
  const int n = 9, trials = 40000;
  for (double level : {0.5, 0.8}) {
    const double rank = std::ceil((n + 1) * level);
    int covered = 0;
    for (int t = 0; t < trials; ++t) {
      std::vector<double> scores(n);
      for (double& s : scores) {
        const double true_std = uniform(rng);  // the model says 1
        s = NormalizedResidual(true_std * normal(rng), 0.0, 1.0);
      }
      std::sort(scores.begin(), scores.end());
      const double q = ConformalQuantile(scores, level);
      const double y = uniform(rng) * normal(rng);
      covered += std::abs(y) <= q * 1.0;
    }
    const double coverage = static_cast<double>(covered) / trials;
    const double expected = rank / (n + 1);  // exact for continuous scores
    const double se = std::sqrt(expected * (1 - expected) / trials);
    EXPECT_NEAR(coverage, expected, 4 * se) << "level " << level;
    EXPECT_GE(coverage, level - 4 * se);
  }
}

TEST(ClassScoreTest, LacAndApsByHand) {
  const std::vector<double> p = {0.1, 0.6, 0.3};
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kLac, p, 0), 0.9);
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kLac, p, 1), 0.4);
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kAps, p, 1), 0.6);
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kAps, p, 2), 0.9);
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kAps, p, 0), 1.0);
  EXPECT_EQ(PredictionSet(ConformalScore::kLac, p, 0.75),
            (std::vector<int>{1, 2}));  // p >= 0.25
  EXPECT_EQ(PredictionSet(ConformalScore::kLac, p, 0.3),
            (std::vector<int>{}));  // no class has p >= 0.7
  EXPECT_EQ(PredictionSet(ConformalScore::kAps, p, 0.6), (std::vector<int>{1}));
  EXPECT_EQ(PredictionSet(ConformalScore::kAps, p, 0.95),
            (std::vector<int>{1, 2}));
  EXPECT_EQ(PredictionSet(ConformalScore::kAps, p, 1.0),
            (std::vector<int>{1, 2, 0}));
  // Ties are broken by class index, the same way in scores and sets.
  const std::vector<double> tie = {0.4, 0.4, 0.2};
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kAps, tie, 0), 0.4);
  EXPECT_DOUBLE_EQ(ClassScore(ConformalScore::kAps, tie, 1), 0.8);
  EXPECT_EQ(PredictionSet(ConformalScore::kAps, tie, 0.5),
            (std::vector<int>{0}));
}

// The set at q is exactly the labels whose score is at most q: what the
// coverage guarantee rests on.
TEST(ClassScoreTest, SetsHoldExactlyTheLabelsScoringAtMostQ) {
  std::mt19937 rng(3);
  std::gamma_distribution<double> gamma(0.5, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<double> p(5);
    double sum = 0;
    for (double& v : p) sum += v = gamma(rng);
    for (double& v : p) v /= sum;
    const double q = uniform(rng);
    for (ConformalScore s : {ConformalScore::kLac, ConformalScore::kAps}) {
      const std::vector<int> set = PredictionSet(s, p, q);
      for (int k = 0; k < 5; ++k) {
        const bool in = std::find(set.begin(), set.end(), k) != set.end();
        EXPECT_EQ(in, ClassScore(s, p, k) <= q)
            << ConformalScoreName(s) << " class " << k << " q " << q;
      }
    }
  }
}

Calibration Example() {
  Calibration c;
  c.score = ConformalScore::kNormalizedResidual;
  c.samples = 10000;
  c.seed = 18446744073709551615ull;
  c.source = "concrete split 0, \"calibration\" 20%";
  c.created = "2026-12-02T23:00:00Z";
  c.scores = {{0.0, 1.0 / 3.0, 0.1 + 0.2, 4.9e-324, 1e300},
              {0.5, 0.5, 2.0 / 7.0, 3.0, 1e-17}};
  for (auto& l : c.scores) std::sort(l.begin(), l.end());
  return c;
}

TEST(CalibrationJsonTest, RoundTripsBitForBit) {
  const Calibration c = Example();
  auto back = ParseCalibration(CalibrationToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == c);
  for (size_t i = 0; i < c.scores.size(); ++i) {
    EXPECT_EQ(std::memcmp(back->scores[i].data(), c.scores[i].data(),
                          c.scores[i].size() * sizeof(double)),
              0);
  }
}

TEST(CalibrationJsonTest, RefusesMalformedCalibrationsNamingTheField) {
  const std::string good = CalibrationToJson(Example());
  auto fails_with = [](const std::string& json, const std::string& what) {
    auto c = ParseCalibration(json);
    ASSERT_FALSE(c.ok()) << json;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(what), std::string::npos)
        << c.status().message();
  };
  fails_with("[1, 2]", "not a JSON object");
  fails_with("{\"method\": \"split_conformal\"", "not a JSON object");
  fails_with("{\"method\": \"cv+\", \"score\": \"lac\"}", "method");
  fails_with(R"({"method": "split_conformal", "score": "hinge", "samples": 1,
                 "scores": [[1]]})",
             "unknown conformal score");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 0,
                 "scores": [[1]]})",
             "samples");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "scores": []})",
             "scores");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "scores": [[0.5, 0.2]]})",
             "not sorted");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "scores": [[-1, 0.2]]})",
             "finite number >= 0");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "scores": [[0.1, 1e999]]})",
             "");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "scores": [[0.1, 0.2], [0.3]]})",
             "scores[1]");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "scores": [[0.1, "x"]]})",
             "numbers");
  fails_with(R"({"method": "split_conformal", "score": "lac", "samples": 5,
                 "rows": 3, "scores": [[0.1, 0.2]]})",
             "rows");
  EXPECT_TRUE(ParseCalibration(good).ok());
}

TEST(CalibrationModelTest, IsStoredInTheModelFileAndCheckedAgainstTheModel) {
  ModelSpec spec = RandomSpec({3, 8, 2}, {0.1f, 0.1f}, Task::kRegression,
                              Activation::kRelu, 5);
  spec.calibration = Example();
  const Model model = MustCreate(spec);
  auto bytes = model.ToBytes();
  ASSERT_TRUE(bytes.ok());
  auto back = Model::FromBytes(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->spec().calibration.has_value());
  EXPECT_TRUE(*back->spec().calibration == *spec.calibration);
  EXPECT_EQ(back->spec().extra_metadata.count("calibration"), 0u);

  ModelSpec one_list = spec;
  one_list.calibration->scores.pop_back();  // 1 list, 2 outputs
  auto refused = Model::Create(one_list);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("the model needs 2"),
            std::string::npos)
      << refused.status();
  ModelSpec unsorted = spec;  // a spec built in code is checked as a file is
  std::swap(unsorted.calibration->scores[0][0],
            unsorted.calibration->scores[0][4]);
  refused = Model::Create(unsorted);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not sorted"), std::string::npos)
      << refused.status();
  ModelSpec classifier = RandomSpec(
      {3, 8, 2}, {0.1f, 0.1f}, Task::kClassification, Activation::kRelu, 5);
  classifier.calibration = Example();  // a regression score
  refused = Model::Create(classifier);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not for classification"),
            std::string::npos)
      << refused.status();
}

// End to end through the engine: the model claims noise 1/tau = 0.25^2
// (tau = 16) but the data's noise has std 0.2..1.2 depending on the input.
// The mixture intervals under-cover; the conformal ones, calibrated on 2000
// rows, cover new rows at the level. Given one calibration set, coverage is
// Beta-distributed about the level (sd sqrt(a (1 - a) / n) = 0.009 at
// a = 0.8), and 3000 test rows add 0.007: 0.035 is over 3 sd of both.
TEST(CalibrateTest, ConformalIntervalsCoverWhereTheModelsOwnDoNot) {
  ModelSpec spec = RandomSpec({2, 16, 1}, {0.1f, 0.1f}, Task::kRegression,
                              Activation::kRelu, 11);
  spec.tau = 16.0;
  const Model model = MustCreate(spec);
  Engine engine({.threads = 2});
  auto make_data = [&](int n, uint32_t seed, RowMajorMatrixXf* x,
                       RowMajorMatrixXf* y) {
    *x = RandomInputs(n, 2, seed);
    PredictOptions po;
    po.mode = PredictMode::kDeterministic;
    auto clean = engine.Predict(model, testing::View(*x), po);
    ASSERT_TRUE(clean.ok());
    std::mt19937 rng(seed + 1);
    std::normal_distribution<float> normal;
    y->resize(n, 1);
    for (int r = 0; r < n; ++r) {
      const float noise_std = 0.2f + 0.5f * std::abs((*x)(r, 0));
      (*y)(r, 0) =
          static_cast<float>(clean->Mean(r, 0)) + noise_std * normal(rng);
    }
  };
  RowMajorMatrixXf cx, cy, tx, ty;
  make_data(2000, 100, &cx, &cy);
  make_data(3000, 200, &tx, &ty);
  CalibrateOptions options;
  options.samples = 64;
  options.source = "synthetic";
  auto c = Calibrate(engine, model, cx, cy, {}, options);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rows(), 2000);
  EXPECT_TRUE(std::is_sorted(c->scores[0].begin(), c->scores[0].end()));

  PredictOptions po;
  po.samples = 64;
  po.seed = 99;
  const std::vector<double> levels = {0.8, 0.9};
  po.interval_levels = levels;
  auto p = engine.Predict(model, testing::View(tx), po);
  ASSERT_TRUE(p.ok()) << p.status();
  for (size_t l = 0; l < levels.size(); ++l) {
    const double q = ConformalQuantile(c->scores[0], levels[l]);
    int conformal = 0, mixture = 0;
    for (int r = 0; r < 3000; ++r) {
      const double y = ty(r, 0), m = p->Mean(r, 0);
      conformal += std::abs(y - m) <= q * std::sqrt(p->Variance(r, 0));
      const IntervalBounds& b = p->intervals[r * levels.size() + l];
      mixture += b.lower <= y && y <= b.upper;
    }
    EXPECT_NEAR(conformal / 3000.0, levels[l], 0.035) << levels[l];
    EXPECT_LT(mixture / 3000.0, levels[l] - 0.1) << levels[l];
  }
}

TEST(CalibrateTest, RefusesDataThatDoesNotFit) {
  const Model reg = MustCreate(RandomSpec(
      {2, 4, 1}, {0.1f, 0.1f}, Task::kRegression, Activation::kRelu, 1));
  const Model cls = MustCreate(RandomSpec(
      {2, 4, 3}, {0.1f, 0.1f}, Task::kClassification, Activation::kRelu, 1));
  Engine engine({.threads = 1});
  RowMajorMatrixXf x = RandomInputs(3, 2, 1), y(3, 1);
  y << 1, std::nanf(""), 2;
  auto r = Calibrate(engine, reg, x, y, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("row 1: target 0 is not finite"),
            std::string::npos)
      << r.status();
  r = Calibrate(engine, cls, x, {}, {0, 3, 1}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("row 1: label 3"), std::string::npos)
      << r.status();
  r = Calibrate(engine, reg, RandomInputs(3, 5, 1), y, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("5 features"), std::string::npos);
  r = Calibrate(engine, reg, RowMajorMatrixXf(0, 2), RowMajorMatrixXf(0, 1), {},
                {});
  ASSERT_FALSE(r.ok());
  CalibrateOptions lac_on_regression;
  lac_on_regression.samples = 1;
  y(1, 0) = 0;
  EXPECT_FALSE(Calibrate(engine, reg, x, y, {}, lac_on_regression).ok());
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
