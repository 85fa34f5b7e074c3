// Copyright 2026 The mcdrop Authors.
//
// Predictive draws (core/draws.h): the noise is the reference generator's,
// whichever implementation made it; the engine's draws have the predictive
// mean and variance it reports, within Monte-Carlo error; a seed gives the
// same draws on any number of threads.

#include "core/draws.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/engine.h"
#include "core/model.h"

namespace mcdrop {
namespace {

TEST(DrawsTest, NoiseIsTheReferenceGeneratorsForEveryIndex) {
  const int T = 7, B = 3, D = 5;  // odd D: the last pair is half used
  std::vector<float> y(T * B * D, 0.0f);
  AddPredictiveNoise(42, 2.0, T, B, D, y.data());
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      for (int d = 0; d < D; ++d) {
        const float want =
            static_cast<float>(2.0 * PredictiveNoiseReference(42, t, b, d));
        EXPECT_EQ(y[(t * B + b) * D + d], want) << t << " " << b << " " << d;
      }
    }
  }
  // Another seed, other noise.
  std::vector<float> z(T * B * D, 0.0f);
  AddPredictiveNoise(43, 2.0, T, B, D, z.data());
  EXPECT_NE(y, z);
}

TEST(DrawsTest, StandardNormalMoments) {
  const int T = 200000;
  std::vector<float> y(T, 0.0f);
  AddPredictiveNoise(7, 1.0, T, 1, 1, y.data());
  double s1 = 0, s2 = 0;
  for (float v : y) {
    s1 += v;
    s2 += double{v} * v;
  }
  const double mean = s1 / T, var = s2 / T - mean * mean;
  // Standard errors: 1/sqrt(T) for the mean, sqrt(2/T) for the variance.
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(T));
  EXPECT_NEAR(var, 1.0, 5.0 * std::sqrt(2.0 / T));
}

absl::StatusOr<Prediction> RunDraws(const Model& model, const float* x,
                                    int threads, bool draws) {
  Engine engine({.threads = threads, .inline_small_requests = false});
  PredictOptions opt;
  opt.samples = 20000;
  opt.seed = 99;
  opt.return_samples = true;
  opt.predictive_draws = draws;
  return engine.Predict(model, InputMatrix(x, 1, model.input_size()), opt);
}

TEST(DrawsTest, EngineDrawsHaveThePredictiveMeanAndVariance) {
  auto model =
      Model::Load(std::string(MCDROP_MODELS_DIR) + "/concrete.safetensors");
  ASSERT_TRUE(model.ok()) << model.status();
  const float x[8] = {540, 0, 0, 162, 2.5, 1040, 676, 28};
  auto draws = RunDraws(*model, x, 2, true);
  auto passes = RunDraws(*model, x, 1, false);
  ASSERT_TRUE(draws.ok()) << draws.status();
  ASSERT_TRUE(passes.ok());
  // The statistics are those of the passes; only the returned samples differ.
  EXPECT_EQ(draws->mean, passes->mean);
  EXPECT_EQ(draws->variance, passes->variance);
  const int T = draws->samples;
  const double sigma = 1.0 / std::sqrt(model->tau());
  double s1 = 0, s2 = 0;
  for (int t = 0; t < T; ++t) {
    const double y = draws->Sample(t, 0, 0);
    // Each draw is its pass plus the seed's noise for (t, 0, 0).
    EXPECT_FLOAT_EQ(y, passes->Sample(t, 0, 0) +
                           sigma * PredictiveNoiseReference(99, t, 0, 0));
    s1 += y;
    s2 += y * y;
  }
  const double mean = s1 / T, var = s2 / T - mean * mean;
  double m4 = 0;
  for (int t = 0; t < T; ++t) m4 += std::pow(draws->Sample(t, 0, 0) - mean, 4);
  m4 /= T;
  const double v = draws->Variance(0, 0);  // model variance + 1/tau
  // Monte-Carlo standard errors of the sample mean and variance.
  EXPECT_NEAR(mean, draws->Mean(0, 0), 5.0 * std::sqrt(v / T));
  EXPECT_NEAR(var, v, 5.0 * std::sqrt((m4 - var * var) / T));
  // The noise is really there: the draws spread more than the passes.
  EXPECT_GT(var, draws->model_variance[0] * 1.2);
  // Bit-identical on one thread.
  auto again = RunDraws(*model, x, 1, true);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->sample_values, draws->sample_values);
}

TEST(DrawsTest, RefusedWhereTheyMeanNothing) {
  auto model =
      Model::Load(std::string(MCDROP_MODELS_DIR) + "/concrete.safetensors");
  auto digits =
      Model::Load(std::string(MCDROP_MODELS_DIR) + "/digits.safetensors");
  ASSERT_TRUE(model.ok() && digits.ok());
  const std::vector<float> x(64, 1.0f);
  PredictOptions opt;
  opt.predictive_draws = true;
  EXPECT_FALSE(Engine::Validate(*model, InputMatrix(x.data(), 1, 8), opt).ok());
  opt.return_samples = true;
  EXPECT_TRUE(Engine::Validate(*model, InputMatrix(x.data(), 1, 8), opt).ok());
  opt.include_noise = false;
  EXPECT_FALSE(Engine::Validate(*model, InputMatrix(x.data(), 1, 8), opt).ok());
  opt.include_noise = true;
  const auto s = Engine::Validate(*digits, InputMatrix(x.data(), 1, 64), opt);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("regression"));
}

}  // namespace
}  // namespace mcdrop

namespace mcdrop {
namespace {

// Rounds of passes: T = 300 as 100 then 200 (first_sample 100) gives the
// very passes (and draws) of one request of 300, whatever the threads.
TEST(RoundsTest, ConsecutiveRoundsArePassesOfOneRequest) {
  auto model =
      Model::Load(std::string(MCDROP_MODELS_DIR) + "/concrete.safetensors");
  ASSERT_TRUE(model.ok()) << model.status();
  const float x[16] = {540,   0,     0, 162, 2.5, 1040, 676, 28,
                       332.5, 142.5, 0, 228, 0,   932,  594, 270};
  auto run = [&](int threads, uint32_t first, int T) {
    Engine engine({.threads = threads, .inline_small_requests = false});
    PredictOptions opt;
    opt.samples = T;
    opt.first_sample = first;
    opt.seed = 5;
    opt.return_samples = true;
    opt.predictive_draws = true;
    auto p = engine.Predict(*model, InputMatrix(x, 2, 8), opt);
    EXPECT_TRUE(p.ok()) << p.status();
    return p->sample_values;
  };
  const std::vector<float> whole = run(2, 0, 300);
  std::vector<float> rounds = run(1, 0, 100);
  const std::vector<float> second = run(2, 100, 200);
  rounds.insert(rounds.end(), second.begin(), second.end());
  EXPECT_EQ(rounds, whole);
  // Another offset, other passes.
  EXPECT_NE(run(2, 1, 100),
            std::vector<float>(whole.begin(), whole.begin() + 200));
  PredictOptions bad;
  bad.samples = 2;
  bad.first_sample = 0xFFFFFFFFu;
  EXPECT_FALSE(Engine::Validate(*model, InputMatrix(x, 2, 8), bad).ok());
}

}  // namespace
}  // namespace mcdrop
