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

// Scores a regression model of `outputs` outputs (D >= 1) and precision
// `tau` from responses made with return_samples and interval_levels =
// CoverageLevels().
class RegressionEvaluator {
 public:
  RegressionEvaluator(double tau, int outputs) : tau_(tau), outputs_(outputs) {}
  // `targets`: B x D, row-major, for the B rows sent. InvalidArgument if
  // they are not whole rows (or D < 1). The response is then checked
  // (ValidatePredictResponse, client/validation.h): Internal, naming the
  // inconsistency, if it does not fit B rows of D outputs with their samples
  // and the coverage intervals. Nothing is added unless all of it is.
  absl::Status Add(const v1::PredictResponse& response,
                   const std::vector<float>& targets);
  RegressionEvaluation Result() const;

 private:
  double tau_;
  int outputs_;
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

// Scores a classifier of `classes` classes (0 if not known: then every row
// must have as many probabilities as the first).
class ClassificationEvaluator {
 public:
  explicit ClassificationEvaluator(int classes) : classes_(classes) {}
  // `labels`: the class of each row sent. The response is checked first
  // (ValidatePredictResponse): Internal, naming the inconsistency, if it does
  // not fit one row per label of `classes` probabilities with a predicted
  // class among them; InvalidArgument for a label that is not a class.
  // Nothing is added unless all of it is.
  absl::Status Add(const v1::PredictResponse& response,
                   const std::vector<int>& labels);
  ClassificationEvaluation Result() const;

 private:
  void AddRow(const v1::ClassPrediction& row, int label);

  int classes_;
  int n_ = 0, correct_ = 0;
  double nll_ = 0, brier_ = 0, entropy_ = 0, mi_ = 0;
  CalibrationBins calibration_{ClassificationEvaluation::kBins};
};

}  // namespace mcdrop

#endif  // MCDROP_CLIENT_EVALUATION_H_
