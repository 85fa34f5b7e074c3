// Copyright 2026 The mcdrop Authors.
//
// Training of dropout MLPs as in Gal & Ghahramani (2016) and its experiment
// code: dropout before every dense layer (the input included), ReLU (or
// another activation of the format), mean-squared-error loss for regression
// or softmax cross-entropy for classification, L2 weight decay
//   lambda = l^2 (1 - p) / (2 N tau)
// on the weights (not the biases) added to the loss as lambda * ||W||^2, and
// Adam (Keras' form and defaults). Inputs (and regression targets) are
// standardised on the training data; the standardisation, tau and the drop
// rates go into the model, so the served model takes raw inputs and answers
// in raw units.

#ifndef MCDROP_TRAIN_TRAINER_H_
#define MCDROP_TRAIN_TRAINER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine.h"
#include "core/model.h"
#include "train/dataset.h"

namespace mcdrop {

struct TrainConfig {
  Task task = Task::kRegression;
  Activation activation = Activation::kRelu;
  std::vector<int> hidden = {50};
  // Drop rate before every dense layer; input_dropout < 0 means the same rate
  // on the input too (the paper), 0 means no input dropout.
  double dropout = 0.05;
  double input_dropout = -1.0;
  // Regression: model precision in target units. Sets the weight decay (when
  // weight_decay < 0) and is written into the model.
  double tau = 1.0;
  double length_scale = 1e-2;
  // lambda; < 0 derives it from the formula above (classification: tau = 1).
  double weight_decay = -1.0;
  int epochs = 40;
  int batch_size = 128;
  double learning_rate = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7;
  uint64_t seed = 1;
  // Called after each epoch with (epoch from 1, mean training loss incl. the
  // L2 term, seconds since the start).
  std::function<void(int, double, double)> on_epoch;
};

// lambda = l^2 (1 - p) / (2 N tau).
double PaperWeightDecay(double length_scale, double dropout, int n, double tau);

// Trains a model on `data`. Deterministic: the same data, config and seed give
// bit-identical weights. InvalidArgument for an empty or inconsistent data
// set or a config out of range (rates in [0, 1), tau > 0, sizes >= 1).
absl::StatusOr<Model> Train(const Dataset& data, const TrainConfig& config);

// The paper's evaluation of a regression model on a test set through the
// engine, with T passes per point: RMSE of the MC mean and the average test
// log-likelihood
//   ll = logsumexp_t(-tau/2 |y - y_t|^2) - log T - D/2 log(2 pi) + D/2 log tau
// (tau in target units; D outputs; scoring/scoring.h computes both). Rows are
// sent in batches of `batch_rows`, batch k (from row `begin`) with seed
// `seed + begin`. InvalidArgument for a classification model, targets that
// do not match the model's outputs, or batch_rows < 1; the engine's errors as
// they are.
struct RegressionScores {
  double rmse = 0.0;
  double log_likelihood = 0.0;
  int n = 0;
};
absl::StatusOr<RegressionScores> EvaluateRegression(Engine& engine,
                                                    const Model& model,
                                                    const Dataset& test,
                                                    int samples, uint64_t seed,
                                                    int batch_rows = 64);

}  // namespace mcdrop

#endif  // MCDROP_TRAIN_TRAINER_H_
