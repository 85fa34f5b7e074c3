// Copyright 2026 The mcdrop Authors.

#include "scoring/scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mcdrop {

double SampleLogLikelihood(const float* samples, int64_t stride, int T, int D,
                           const float* target, double tau) {
  double max_term = -std::numeric_limits<double>::infinity();
  std::vector<double> terms(T);
  for (int t = 0; t < T; ++t) {
    double sq = 0.0;
    for (int d = 0; d < D; ++d) {
      const double e = static_cast<double>(target[d]) - samples[t * stride + d];
      sq += e * e;
    }
    terms[t] = -0.5 * tau * sq;
    max_term = std::max(max_term, terms[t]);
  }
  double sum = 0.0;
  for (double v : terms) sum += std::exp(v - max_term);
  return max_term + std::log(sum) - std::log(static_cast<double>(T)) -
         0.5 * D * std::log(2 * M_PI) + 0.5 * D * std::log(tau);
}

void SquaredError::Add(double target, double prediction) {
  const double e = target - prediction;
  sum_ += e * e;
  ++count_;
}

double SquaredError::Rmse() const {
  return count_ == 0 ? 0.0 : std::sqrt(sum_ / static_cast<double>(count_));
}

void IntervalCoverage::Add(double target, double lower, double upper) {
  ++count_;
  if (target >= lower && target <= upper) ++covered_;
  width_ += upper - lower;
}

double IntervalCoverage::Coverage() const {
  return count_ == 0
             ? 0.0
             : static_cast<double>(covered_) / static_cast<double>(count_);
}

double IntervalCoverage::MeanWidth() const {
  return count_ == 0 ? 0.0 : width_ / static_cast<double>(count_);
}

CalibrationBins::CalibrationBins(int bins) : bins_(std::max(1, bins)) {}

int CalibrationBins::BinOf(double confidence) const {
  const int last = static_cast<int>(bins_.size()) - 1;
  // Compared before any cast: casting NaN or a huge value to int is undefined.
  if (!(confidence > 0.0)) return 0;
  if (confidence >= 1.0) return last;
  return std::min(last, static_cast<int>(confidence * bins_.size()));
}

void CalibrationBins::Add(double confidence, bool correct) {
  Bin& b = bins_[BinOf(confidence)];
  ++b.n;
  b.correct += correct ? 1 : 0;
  b.confidence += confidence;
  ++count_;
}

double CalibrationBins::ExpectedCalibrationError() const {
  if (count_ == 0) return 0.0;
  double ece = 0.0;
  for (const Bin& b : bins_) {
    if (b.n == 0) continue;
    const double n = static_cast<double>(b.n);
    ece += n / static_cast<double>(count_) *
           std::abs(static_cast<double>(b.correct) / n - b.confidence / n);
  }
  return ece;
}

}  // namespace mcdrop
