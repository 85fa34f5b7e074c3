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
// Ghahramani); its quantiles are found exactly by a bracketed Newton
// iteration on the mixture CDF. With T = 1 that is y_1 +- z s.

#ifndef MCDROP_CORE_INTERVALS_H_
#define MCDROP_CORE_INTERVALS_H_

#include <cstdint>
#include <vector>

namespace mcdrop {

struct IntervalBounds {
  double lower = 0.0;
  double upper = 0.0;
};

// `samples[t * stride]` for t in [0, T) are the passes; `level` in (0, 1);
// `noise_variance` >= 0. `scratch` is reused between calls to avoid
// allocation. Thread-compatible.
IntervalBounds PredictiveInterval(const float* samples, int64_t stride, int T,
                                  double noise_variance, double level,
                                  std::vector<double>* scratch);

// The mixture CDF (1/T) sum_t Phi((z - y_t) / s) over sorted samples `ys`
// (exposed for tests).
double MixtureCdf(const std::vector<double>& ys, double s, double z);

}  // namespace mcdrop

#endif  // MCDROP_CORE_INTERVALS_H_
