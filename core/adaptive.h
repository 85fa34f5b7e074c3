// Copyright 2026 The mcdrop Authors.
//
// Adaptive T: instead of a fixed number of passes, a target for the
// Monte-Carlo standard error of every predictive mean (regression outputs,
// or classification mean probabilities). The passes run in rounds:
// min_samples first, then rounds that double T, each round continuing the
// previous ones' statistics exactly (PredictOptions::first_sample, resume
// and row_ids), so a row that stops at T has bit for bit the figures of a
// fixed-T request of T passes with the same seed. After each round the rows
// whose every output meets the target stop; the others go on, alone, until
// they meet it or reach max_samples. The round sizes depend only on the
// statistics, and each round is bit-identical whatever the threads, so a
// seed gives the same T and the same answer everywhere.
//
// The standard error of a mean over T passes is s / sqrt(T), s^2 the
// passes' sample variance (model_variance * T / (T - 1)). The relative
// target is against the predictive std: sqrt(variance) for regression (with
// 1/tau unless include_noise is off), sqrt(p (1 - p)) for a class
// probability p (the std of the one-hot label). Both bound s, so a relative
// target r is always met by T = ceil(1 / r^2) + 1 passes.

#ifndef MCDROP_CORE_ADAPTIVE_H_
#define MCDROP_CORE_ADAPTIVE_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine.h"
#include "core/model.h"

namespace mcdrop {

struct AdaptiveOptions {
  // Targets for the standard error of each mean: absolute (output units, or
  // probability) and/or relative to the predictive std; 0 leaves one out;
  // with both, both must hold. With neither, every row runs max_samples
  // passes in rounds (how a fixed T is streamed).
  double target_abs = 0.0;
  double target_rel = 0.0;
  int min_samples = 100;  // the first round; at least 2
  int max_samples = 10000;
};

struct AdaptivePrediction {
  // Row by row, the figures of the row's own T passes. `samples` is the
  // largest T used; sample_values is empty (see row_samples).
  Prediction prediction;
  std::vector<int> samples_per_row;    // [B]: the T each row used
  std::vector<double> standard_error;  // [B x D]: of each mean
  std::vector<bool> target_met;        // [B]
  // With return_samples: row b's passes, [samples_per_row[b] x D].
  std::vector<std::vector<float>> row_samples;
  int rounds = 0;
  int64_t row_passes = 0;  // the sum of samples_per_row: the work done
  bool finished = false;   // false in the running estimates of on_round
};

// The answer of a fixed-T request in the same form: every row used
// prediction.samples passes, the standard errors are those of its passes
// (0 for fewer than two), no target was set (target_met all false).
AdaptivePrediction FixedAnswer(Prediction prediction);

// InvalidArgument for deterministic mode, intervals, targets that are
// negative or NaN, min_samples < 2 or > max_samples, max_samples beyond
// 2^31 - 1; else as Engine::Predict.
absl::Status ValidateAdaptive(const Model& model, const PredictOptions& options,
                              const AdaptiveOptions& adaptive);

// Runs the rounds on the engine's pool, each started from the previous
// one's completion (no thread waits), and calls `done` exactly once. If
// given, `on_round` is called after every round but the last with the
// running estimates (every row: its figures so far), on a pool thread, and
// may return false to stop the request (done then gets CANCELLED). The
// memory behind `inputs` must stay valid until `done`; `model` is shared as
// by Engine::PredictAsync. Cancellation and the deadline in `options` apply
// to every round.
void PredictAdaptiveAsync(
    Engine& engine, std::shared_ptr<const Model> model, InputMatrix inputs,
    PredictOptions options, AdaptiveOptions adaptive,
    std::function<void(absl::StatusOr<AdaptivePrediction>)> done,
    std::function<bool(const AdaptivePrediction&)> on_round = nullptr);

// Blocking form, for a model the caller owns. Not from a pool thread.
absl::StatusOr<AdaptivePrediction> PredictAdaptive(
    Engine& engine, const Model& model, InputMatrix inputs,
    PredictOptions options, const AdaptiveOptions& adaptive);

}  // namespace mcdrop

#endif  // MCDROP_CORE_ADAPTIVE_H_
