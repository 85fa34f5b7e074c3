// Copyright 2026 The mcdrop Authors.

#include "core/calibrate.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mcdrop {
namespace {

absl::Status CheckData(const Model& model, const RowMajorMatrixXf& inputs,
                       const RowMajorMatrixXf& targets,
                       const std::vector<int>& labels) {
  const int64_t n = inputs.rows();
  if (n < 1) return absl::InvalidArgumentError("no calibration rows");
  if (inputs.cols() != model.input_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the rows have ", inputs.cols(),
                     " features, the model takes ", model.input_size()));
  }
  if (model.task() == Task::kRegression) {
    if (targets.rows() != n || targets.cols() != model.output_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("need ", n, " x ", model.output_size(), " targets, got ",
                       targets.rows(), " x ", targets.cols()));
    }
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t d = 0; d < targets.cols(); ++d) {
        if (!std::isfinite(targets(r, d))) {
          return absl::InvalidArgumentError(
              absl::StrCat("row ", r, ": target ", d, " is not finite"));
        }
      }
    }
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(labels.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("need ", n, " labels, got ", labels.size()));
  }
  for (int64_t r = 0; r < n; ++r) {
    if (labels[r] < 0 || labels[r] >= model.output_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", r, ": label ", labels[r], " is not a class (0..",
                       model.output_size() - 1, ")"));
    }
  }
  return absl::OkStatus();
}

// Appends the scores of rows [begin, begin + rows) from their prediction.
void AddScores(const Model& model, const Prediction& p, int64_t begin,
               const RowMajorMatrixXf& targets, const std::vector<int>& labels,
               ConformalScore class_score, Calibration* c) {
  const int D = p.outputs;
  for (int r = 0; r < p.rows; ++r) {
    if (model.task() == Task::kRegression) {
      for (int d = 0; d < D; ++d) {
        c->scores[d].push_back(NormalizedResidual(
            targets(begin + r, d), p.Mean(r, d), std::sqrt(p.Variance(r, d))));
      }
    } else {
      c->scores[0].push_back(ClassScore(
          class_score,
          absl::MakeConstSpan(p.mean.data() + static_cast<size_t>(r) * D, D),
          labels[begin + r]));
    }
  }
}

}  // namespace

absl::StatusOr<Calibration> Calibrate(Engine& engine, const Model& model,
                                      const RowMajorMatrixXf& inputs,
                                      const RowMajorMatrixXf& targets,
                                      const std::vector<int>& labels,
                                      const CalibrateOptions& options) {
  if (absl::Status s = CheckData(model, inputs, targets, labels); !s.ok())
    return s;
  if (options.samples < 2 || options.batch_rows < 1) {
    return absl::InvalidArgumentError(
        "calibration needs T >= 2 passes and batches of >= 1 row");
  }
  const bool regression = model.task() == Task::kRegression;
  if (!regression && !IsClassificationScore(options.class_score)) {
    return absl::InvalidArgumentError(
        "a classifier is calibrated with the lac or aps score");
  }
  Calibration c;
  c.score =
      regression ? ConformalScore::kNormalizedResidual : options.class_score;
  c.samples = options.samples;
  c.seed = options.seed;
  c.source = options.source;
  c.created = options.created;
  c.scores.resize(regression ? model.output_size() : 1);
  const int64_t n = inputs.rows();
  for (int64_t begin = 0; begin < n; begin += options.batch_rows) {
    const int64_t rows = std::min<int64_t>(options.batch_rows, n - begin);
    PredictOptions po;
    po.samples = options.samples;
    po.seed = options.seed + static_cast<uint64_t>(begin);
    po.include_noise = true;
    const InputMatrix block(inputs.data() + begin * inputs.cols(), rows,
                            inputs.cols());
    auto p = engine.Predict(model, block, po);
    if (!p.ok()) return p.status();
    AddScores(model, *p, begin, targets, labels, c.score, &c);
  }
  for (auto& list : c.scores) {
    for (size_t r = 0; r < list.size(); ++r) {
      if (!std::isfinite(list[r])) {
        return absl::InvalidArgumentError(
            absl::StrCat("row ", r, ": the model's prediction is not finite"));
      }
    }
    std::sort(list.begin(), list.end());
  }
  return c;
}

}  // namespace mcdrop
