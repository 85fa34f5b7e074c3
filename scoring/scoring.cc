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

int StratifiedPoints(const float* samples, int64_t stride, int T,
                     int max_points, float* out) {
  if (T <= max_points) {
    for (int t = 0; t < T; ++t) out[t] = samples[t * stride];
    return T;
  }
  std::vector<float> sorted(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) sorted[t] = samples[t * stride];
  // NaN (from a pass that overflowed) sorts last.
  std::sort(sorted.begin(), sorted.end(), [](float a, float b) {
    return a < b || (!std::isnan(a) && std::isnan(b));
  });
  for (int i = 0; i < max_points; ++i) {
    const int64_t rank =
        static_cast<int64_t>((static_cast<double>(i) + 0.5) * T / max_points);
    out[i] = sorted[std::min<int64_t>(rank, T - 1)];
  }
  return max_points;
}

double BrierScore(const double* probs, int k, int label) {
  double sum = 0.0;
  for (int c = 0; c < k; ++c) {
    const double e = probs[c] - (c == label ? 1.0 : 0.0);
    sum += e * e;
  }
  return sum;
}

double Auroc(const std::vector<double>& score,
             const std::vector<uint8_t>& positive) {
  const size_t n = std::min(score.size(), positive.size());
  std::vector<size_t> order;  // NaN scores are left out
  for (size_t i = 0; i < n; ++i) {
    if (!std::isnan(score[i])) order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return score[a] < score[b]; });
  // Mann-Whitney: the positives' summed ranks, ties given their mean rank.
  double rank_sum = 0.0, positives = 0.0;
  const size_t m = order.size();
  for (size_t i = 0; i < m;) {
    size_t j = i;
    while (j < m && score[order[j]] == score[order[i]]) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + 1 + j);
    for (size_t k = i; k < j; ++k) {
      if (positive[order[k]]) {
        rank_sum += mean_rank;
        positives += 1.0;
      }
    }
    i = j;
  }
  const double negatives = static_cast<double>(m) - positives;
  if (positives == 0 || negatives == 0) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

}  // namespace mcdrop
