// Copyright 2026 The mcdrop Authors.
//
// Central predictive intervals of one regression output from its T sampled
// passes y_1..y_T.
//
// Without observation noise the interval is the pair of empirical quantiles
// of the samples at (1 - level) / 2 and (1 + level) / 2, with linear
// interpolation between order statistics (numpy's default, Hyndman-Fan type
// 7). With noise variance s^2 = 1/tau the predictive distribution is the
// mixture (1/T) sum_t N(y_t, s^2) (the MC-dropout predictive of Gal &
// Ghahramani); its quantiles are found by a safeguarded Newton iteration on
// the mixture CDF. With T = 1 that is y_1 +- z s.
//
// Cost and accuracy (docs/performance.md, "Predictive intervals"): one sort
// of the T samples, O(T log T); then the sorted samples are grouped into
// clusters no wider than h = s / 32, each kept as its count, its mean and its
// central moments 2 to 4. One evaluation of the mixture CDF sums a
// fourth-order Taylor expansion of Phi over the clusters within 9 s + h of
// the point (at most 2 * 9 * 32 + 3 = 579 of them, whatever T is) and counts
// the clusters below that window as 1. The truncation error is below
// Phi(-9) ~ 1e-19 and the expansion's below (h/s)^5 / 120 * max|Phi^(5)| =
// 3e-10 per sample, so the CDF at a returned bound is within 1e-9 of its
// level; a quantile takes about 4-8 evaluations.

#ifndef MCDROP_CORE_INTERVALS_H_
#define MCDROP_CORE_INTERVALS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace mcdrop {

struct IntervalBounds {
  double lower = 0.0;
  double upper = 0.0;
};

// Buffers reused between calls (to avoid allocating per output).
// (Its fields are the algorithm's working state, not an interface.)
struct IntervalScratch {
  std::vector<float> sorted;
  // Per cluster: members, mean, sums of ((y - mean) / s)^k for k = 2, 3, 4,
  // and the samples in the clusters before it.
  std::vector<double> count, centre, m2, m3, m4, below;
};

// `samples[t * stride]` for t in [0, T) are the passes (T >= 1); every level
// in (0, 1); `noise_variance` >= 0. Writes one interval per level into `out`
// (levels.size() entries); NaN bounds when a sample is NaN or infinite.
// Thread-compatible.
void PredictiveIntervals(const float* samples, int64_t stride, int T,
                         double noise_variance, absl::Span<const double> levels,
                         IntervalBounds* out, IntervalScratch* scratch);

// One level (a convenience form of PredictiveIntervals).
IntervalBounds PredictiveInterval(const float* samples, int64_t stride, int T,
                                  double noise_variance, double level,
                                  IntervalScratch* scratch);

// The exact mixture CDF (1/T) sum_t Phi((z - y_t) / s), O(T): the reference
// the tests compare against.
double MixtureCdf(const std::vector<double>& ys, double s, double z);

}  // namespace mcdrop

#endif  // MCDROP_CORE_INTERVALS_H_
