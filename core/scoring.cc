// Copyright 2026 The mcdrop Authors.

#include "core/scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/conformal.h"

namespace mcdrop {

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

double MixtureCdfAt(absl::Span<const float> points, double s, double y) {
  if (points.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0.0;
  if (s <= 0.0) {
    for (float p : points) sum += p < y ? 1.0 : (p == y ? 0.5 : 0.0);
  } else {
    const double scale = 1.0 / (s * std::sqrt(2.0));
    for (float p : points) sum += 0.5 * std::erfc((p - y) * scale);
  }
  return sum / static_cast<double>(points.size());
}

double MixtureLogDensity(absl::Span<const float> points, double s, double y) {
  if (points.empty() || !(s > 0.0)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  // log N(y; p, s^2) = -0.5 ((y - p) / s)^2 - log(s sqrt(2 pi)).
  double top = -std::numeric_limits<double>::infinity();
  for (float p : points) {
    const double z = (y - p) / s;
    top = std::max(top, -0.5 * z * z);
  }
  double sum = 0.0;
  for (float p : points) {
    const double z = (y - p) / s;
    sum += std::exp(-0.5 * z * z - top);
  }
  const double log_norm = std::log(s) + 0.5 * std::log(2.0 * M_PI);
  return top + std::log(sum / static_cast<double>(points.size())) - log_norm;
}

double BrierScore(absl::Span<const double> probs, int label) {
  double sum = 0.0;
  for (size_t k = 0; k < probs.size(); ++k) {
    const double e = probs[k] - (static_cast<int>(k) == label ? 1.0 : 0.0);
    sum += e * e;
  }
  return sum;
}

double ExpectedCalibrationError(absl::Span<const double> confidence,
                                absl::Span<const uint8_t> correct, int bins) {
  const size_t size = std::min(confidence.size(), correct.size());
  if (bins < 1) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> conf_sum(bins, 0.0), hits(bins, 0.0), count(bins, 0.0);
  size_t n = 0;
  for (size_t i = 0; i < size; ++i) {
    if (std::isnan(confidence[i])) continue;
    ++n;
    const double c = std::clamp(confidence[i], 0.0, 1.0);
    const int b = std::min(bins - 1, static_cast<int>(c * bins));
    conf_sum[b] += c;
    hits[b] += correct[i] ? 1.0 : 0.0;
    count[b] += 1.0;
  }
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  double ece = 0.0;
  for (int b = 0; b < bins; ++b) {
    if (count[b] > 0) ece += std::abs(hits[b] - conf_sum[b]);
  }
  return ece / static_cast<double>(n);
}

double Auroc(absl::Span<const double> score,
             absl::Span<const uint8_t> positive) {
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

double AdaptedQuantile(absl::Span<const double> sorted, double alpha) {
  if (alpha >= 1.0) return 0.0;
  if (alpha <= 0.0) return std::numeric_limits<double>::infinity();
  return ConformalQuantile(sorted, 1.0 - alpha);
}

}  // namespace mcdrop
