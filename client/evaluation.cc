// Copyright 2026 The mcdrop Authors.

#include "client/evaluation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "scoring/scoring.h"

namespace mcdrop {

absl::Status RegressionEvaluator::Add(const v1::PredictResponse& response,
                                      const std::vector<float>& targets) {
  const int B = response.rows_size();
  if (B == 0) return absl::OkStatus();
  const int D = response.rows(0).outputs_size();
  if (static_cast<int>(targets.size()) != B * D) {
    return absl::InvalidArgumentError(absl::StrCat("have ", targets.size(),
                                                   " targets for ", B,
                                                   " rows of ", D, " outputs"));
  }
  if (response.sample_shape_size() != 3 || response.sample_shape(1) != B ||
      response.sample_shape(2) != D) {
    return absl::InvalidArgumentError(
        "the response has no samples (ask return_samples)");
  }
  const int T = static_cast<int>(response.sample_shape(0));
  const int L = static_cast<int>(CoverageLevels().size());
  for (int r = 0; r < B; ++r) {
    const float* y = targets.data() + r * D;
    for (int d = 0; d < D; ++d) {
      const auto& o = response.rows(r).outputs(d);
      error_.Add(y[d], o.mean());
      if (o.intervals_size() != L) {
        return absl::InvalidArgumentError(
            "the response lacks the coverage intervals");
      }
      for (int l = 0; l < L; ++l) {
        const auto& iv = o.intervals(l);
        coverage_[l].Add(y[d], iv.lower(), iv.upper());
      }
    }
    log_likelihood_ +=
        SampleLogLikelihood(response.sample_values().data() + r * D,
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
  if (static_cast<int>(labels.size()) != response.rows_size()) {
    return absl::InvalidArgumentError("one label per row is needed");
  }
  for (int r = 0; r < response.rows_size(); ++r) {
    const auto& c = response.rows(r).classification();
    const int y = labels[r];
    if (y < 0 || y >= c.probabilities_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is not a class of the model"));
    }
    const double p_true = c.probabilities(y);
    nll_ -= std::log(std::max(p_true, 1e-300));
    for (int k = 0; k < c.probabilities_size(); ++k) {
      const double d = c.probabilities(k) - (k == y ? 1.0 : 0.0);
      brier_ += d * d;
    }
    const double confidence = c.probabilities(c.predicted_class());
    const bool correct = c.predicted_class() == y;
    correct_ += correct;
    calibration_.Add(confidence, correct);
    entropy_ += c.entropy();
    mi_ += c.mutual_information();
    ++n_;
  }
  return absl::OkStatus();
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
