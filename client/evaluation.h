// Copyright 2026 The mcdrop Authors.
//
// Is the uncertainty calibrated? Scores of a served model on labelled data,
// accumulated batch by batch from Predict responses.

#ifndef MCDROP_CLIENT_EVALUATION_H_
#define MCDROP_CLIENT_EVALUATION_H_

#include <vector>

#include "absl/status/status.h"
#include "mcdrop/v1/inference.pb.h"
#include "scoring/scoring.h"

namespace mcdrop {

// The nominal levels of the coverage report.
inline const std::vector<double>& CoverageLevels() {
  static const std::vector<double> levels = {0.5, 0.8, 0.9, 0.95};
  return levels;
}

struct RegressionEvaluation {
  int n = 0;  // rows
  double rmse = 0.0;
  // The paper's test log-likelihood, from the returned samples and tau.
  double log_likelihood = 0.0;
  std::vector<double> levels, coverage, mean_width;  // per level
};

// Needs responses made with return_samples and interval_levels =
// CoverageLevels().
class RegressionEvaluator {
 public:
  explicit RegressionEvaluator(double tau) : tau_(tau) {}
  // `targets`: B x D, row-major, for the rows of `response`.
  absl::Status Add(const v1::PredictResponse& response,
                   const std::vector<float>& targets);
  RegressionEvaluation Result() const;

 private:
  double tau_;
  int n_ = 0;
  double log_likelihood_ = 0;
  SquaredError error_;
  std::vector<IntervalCoverage> coverage_ =
      std::vector<IntervalCoverage>(CoverageLevels().size());
};

struct ClassificationEvaluation {
  int n = 0;
  double accuracy = 0, nll = 0, brier = 0, ece = 0;
  double mean_entropy = 0, mean_mutual_information = 0;
  static constexpr int kBins = 15;
};

class ClassificationEvaluator {
 public:
  absl::Status Add(const v1::PredictResponse& response,
                   const std::vector<int>& labels);
  ClassificationEvaluation Result() const;

 private:
  int n_ = 0, correct_ = 0;
  double nll_ = 0, brier_ = 0, entropy_ = 0, mi_ = 0;
  CalibrationBins calibration_{ClassificationEvaluation::kBins};
};

}  // namespace mcdrop

#endif  // MCDROP_CLIENT_EVALUATION_H_
