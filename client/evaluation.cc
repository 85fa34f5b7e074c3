// Copyright 2026 The mcdrop Authors.

#include "client/evaluation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "client/validation.h"
#include "core/status_macros.h"
#include "scoring/scoring.h"

namespace mcdrop {

absl::Status RegressionEvaluator::Add(const v1::PredictResponse& response,
                                      const std::vector<float>& targets) {
  if (outputs_ < 1 || targets.size() % outputs_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(targets.size(), " targets are not whole rows of ",
                     outputs_, " outputs"));
  }
  const int D = outputs_;
  const int B = static_cast<int>(targets.size() / D);
  PredictExpectation expected;
  expected.task = v1::REGRESSION;
  expected.rows = B;
  expected.outputs = D;
  expected.return_samples = true;
  expected.interval_levels = CoverageLevels();
  MCDROP_RETURN_IF_ERROR(ValidatePredictResponse(response, expected));
  const int T = response.samples();
  for (int r = 0; r < B; ++r) {
    const float* y = targets.data() + static_cast<int64_t>(r) * D;
    for (int d = 0; d < D; ++d) {
      const v1::OutputPrediction& o = response.rows(r).outputs(d);
      error_.Add(y[d], o.mean());
      for (size_t l = 0; l < coverage_.size(); ++l) {
        coverage_[l].Add(y[d], o.intervals(l).lower(), o.intervals(l).upper());
      }
    }
    log_likelihood_ += SampleLogLikelihood(
        response.sample_values().data() + static_cast<int64_t>(r) * D,
        static_cast<int64_t>(B) * D, T, D, y, tau_);
    ++n_;
  }
  return absl::OkStatus();
}

RegressionEvaluation RegressionEvaluator::Result() const {
  RegressionEvaluation e;
  e.n = n_;
  if (n_ == 0) return e;
  e.rmse = error_.Rmse();
  e.log_likelihood = log_likelihood_ / n_;
  e.levels = CoverageLevels();
  for (const IntervalCoverage& c : coverage_) {
    e.coverage.push_back(c.Coverage());
    e.mean_width.push_back(c.MeanWidth());
  }
  return e;
}

absl::Status ClassificationEvaluator::Add(const v1::PredictResponse& response,
                                          const std::vector<int>& labels) {
  PredictExpectation expected;
  expected.task = v1::CLASSIFICATION;
  expected.rows = static_cast<int64_t>(labels.size());
  expected.outputs = classes_;
  MCDROP_RETURN_IF_ERROR(ValidatePredictResponse(response, expected));
  for (size_t r = 0; r < labels.size(); ++r) {
    const int y = labels[r];
    if (y < 0 || y >= response.rows(r).classification().probabilities_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is not a class of the model"));
    }
  }
  for (size_t r = 0; r < labels.size(); ++r) {
    AddRow(response.rows(r).classification(), labels[r]);
  }
  return absl::OkStatus();
}

void ClassificationEvaluator::AddRow(const v1::ClassPrediction& c, int label) {
  const double p_true = c.probabilities(label);
  nll_ -= std::log(std::max(p_true, 1e-300));
  for (int k = 0; k < c.probabilities_size(); ++k) {
    const double d = c.probabilities(k) - (k == label ? 1.0 : 0.0);
    brier_ += d * d;
  }
  const bool correct = c.predicted_class() == label;
  correct_ += correct;
  calibration_.Add(c.probabilities(c.predicted_class()), correct);
  entropy_ += c.entropy();
  mi_ += c.mutual_information();
  ++n_;
}

ClassificationEvaluation ClassificationEvaluator::Result() const {
  ClassificationEvaluation e;
  e.n = n_;
  if (n_ == 0) return e;
  e.accuracy = static_cast<double>(correct_) / n_;
  e.nll = nll_ / n_;
  e.brier = brier_ / n_;
  e.ece = calibration_.ExpectedCalibrationError();
  e.mean_entropy = entropy_ / n_;
  e.mean_mutual_information = mi_ / n_;
  return e;
}

}  // namespace mcdrop
