// Copyright 2026 The mcdrop Authors.
//
// Computes a model's split-conformal calibration (core/conformal.h) from
// labelled rows, through the serving engine: the same passes, statistics and
// seeds a served request of T passes would give.

#ifndef MCDROP_CORE_CALIBRATE_H_
#define MCDROP_CORE_CALIBRATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/conformal.h"
#include "core/engine.h"
#include "core/model.h"

namespace mcdrop {

struct CalibrateOptions {
  int samples = 10000;  // T per row
  // Rows [b, b + batch_rows) run with seed `seed + b`.
  uint64_t seed = 1;
  int batch_rows = 64;
  // Classification: lac or aps (regression always uses normalized_residual).
  ConformalScore class_score = ConformalScore::kLac;
  std::string source;   // stored as Calibration::source
  std::string created;  // stored as Calibration::created
};

// `inputs` [N x Q] in the model's raw units, N >= 1. Regression: `targets`
// [N x D] (raw units), `labels` empty; classification: `labels` N classes
// in [0, D), `targets` empty. The predictive variance includes 1/tau (the
// intervals it calibrates are the predictive ones). InvalidArgument naming
// the row for a target that is not finite or a label out of range, or for
// shapes that do not fit the model; the engine's errors otherwise.
absl::StatusOr<Calibration> Calibrate(Engine& engine, const Model& model,
                                      const RowMajorMatrixXf& inputs,
                                      const RowMajorMatrixXf& targets,
                                      const std::vector<int>& labels,
                                      const CalibrateOptions& options);

}  // namespace mcdrop

#endif  // MCDROP_CORE_CALIBRATE_H_
