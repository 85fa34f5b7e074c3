// Copyright 2026 The mcdrop Authors.

#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace mcdrop {
namespace {

// y = sin(3 x0) + 0.5 x1^2 + noise(0.1), 400 rows.
Dataset Synthetic(uint32_t seed, int n = 400) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::normal_distribution<float> noise(0, 0.1f);
  Dataset d;
  d.x.resize(n, 2);
  d.y.resize(n, 1);
  for (int i = 0; i < n; ++i) {
    d.x(i, 0) = u(rng);
    d.x(i, 1) = u(rng);
    d.y(i, 0) =
        5.0f + 2.0f * (std::sin(3 * d.x(i, 0)) + 0.5f * d.x(i, 1) * d.x(i, 1)) +
        noise(rng);
  }
  return d;
}

TEST(TrainerTest, PaperWeightDecay) {
  // lambda = l^2 (1 - p) / (2 N tau)
  EXPECT_DOUBLE_EQ(PaperWeightDecay(1e-2, 0.05, 1000, 0.1),
                   1e-4 * 0.95 / 200.0);
}

TEST(TrainerTest, LearnsASmoothFunction) {
  const Dataset train = Synthetic(1), test = Synthetic(2, 300);
  TrainConfig c;
  c.hidden = {50};
  c.dropout = 0.05;
  c.input_dropout = 0.0;  // two inputs: dropping one would dominate the loss
  c.tau = 25;
  c.epochs = 1000;
  std::vector<double> losses;
  c.on_epoch = [&](int, double loss, double) { losses.push_back(loss); };
  auto model = Train(train, c);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(losses.size(), 1000u);
  // Standardised MSE falls from about 1 towards the noise floor (0.1^2 / 1.5^2
  // = 0.0044); dropout on the hidden layer keeps it above that.
  EXPECT_GT(losses.front(), 0.3);
  EXPECT_LT(losses.back(), 0.05);
  Engine engine({.threads = 2});
  auto s = EvaluateRegression(engine, *model, test, 1000, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  // The target's std is about 1.6; noise alone gives RMSE 0.2.
  EXPECT_LT(s->rmse, 0.45);
  EXPECT_GT(s->log_likelihood, -1.0);
  // The model carries its standardisation, rates and tau.
  EXPECT_EQ(model->spec().input_mean.size(), 2);
  EXPECT_NEAR(model->spec().output_mean[0], train.y.mean(), 1e-3);
  EXPECT_DOUBLE_EQ(model->tau(), 25);
  EXPECT_FLOAT_EQ(model->layers()[0].drop_rate, 0.0f);
  EXPECT_FLOAT_EQ(model->layers()[1].drop_rate, 0.05f);
}

TEST(TrainerTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  const Dataset train = Synthetic(1, 200);
  TrainConfig c;
  c.epochs = 20;
  c.seed = 42;
  auto a = Train(train, c), b = Train(train, c);
  c.seed = 43;
  auto other = Train(train, c);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  for (int l = 0; l < a->num_layers(); ++l) {
    EXPECT_EQ(a->layers()[l].weight, b->layers()[l].weight);
    EXPECT_EQ(a->layers()[l].bias, b->layers()[l].bias);
  }
  EXPECT_NE(a->layers()[0].weight, other->layers()[0].weight);
}

TEST(TrainerTest, ClassifiesSeparableClusters) {
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0, 0.3f);
  Dataset d;
  const int n = 300;
  d.x.resize(n, 2);
  d.num_classes = 3;
  for (int i = 0; i < n; ++i) {
    const int c = i % 3;
    d.x(i, 0) = 2.0f * std::cos(2.1f * c) + noise(rng);
    d.x(i, 1) = 2.0f * std::sin(2.1f * c) + noise(rng);
    d.labels.push_back(c);
  }
  TrainConfig c;
  c.task = Task::kClassification;
  c.hidden = {32};
  c.dropout = 0.1;
  c.epochs = 100;
  auto model = Train(d, c);
  ASSERT_TRUE(model.ok()) << model.status();
  Engine engine({.threads = 1});
  PredictOptions opt;
  opt.samples = 50;
  auto p = engine.Predict(*model, InputMatrix(d.x.data(), n, 2), opt);
  ASSERT_TRUE(p.ok());
  int correct = 0;
  for (int i = 0; i < n; ++i) correct += p->predicted_class[i] == d.labels[i];
  EXPECT_GT(correct, 0.95 * n);
}

TEST(TrainerTest, RejectsBadInput) {
  TrainConfig c;
  EXPECT_FALSE(Train(Dataset(), c).ok());
  Dataset d = Synthetic(1, 10);
  c.dropout = 1.0;
  EXPECT_EQ(Train(d, c).status().code(), absl::StatusCode::kInvalidArgument);
  c.dropout = 0.1;
  c.tau = 0;
  EXPECT_EQ(Train(d, c).status().code(), absl::StatusCode::kInvalidArgument);
  d.x(3, 1) = NAN;
  c.tau = 1;
  EXPECT_EQ(Train(d, c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TrainerTest, EvaluateRegressionRefusesEmptyBatches) {
  const Dataset train = Synthetic(1, 50), test = Synthetic(2, 10);
  TrainConfig c;
  c.epochs = 1;
  auto model = Train(train, c);
  ASSERT_TRUE(model.ok()) << model.status();
  Engine engine({.threads = 1});
  // Refused by EvaluateRegression itself, not left to the engine's check of
  // an empty batch (a negative one is not even a valid Eigen::Map).
  for (int batch_rows : {0, -1, -64}) {
    auto s = EvaluateRegression(engine, *model, test, 10, 1, batch_rows);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument)
        << batch_rows;
    EXPECT_NE(s.status().message().find("batch_rows must be >= 1"),
              absl::string_view::npos)
        << s.status();
  }
  // Batches of one row and of more rows than the set score the same rows
  // with different seeds; both succeed.
  EXPECT_TRUE(EvaluateRegression(engine, *model, test, 10, 1, 1).ok());
  auto all = EvaluateRegression(engine, *model, test, 10, 1, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->n, 10);
}

}  // namespace
}  // namespace mcdrop
