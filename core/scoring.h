// Copyright 2026 The mcdrop Authors.
//
// Scoring a prediction against what was later observed: the figures the
// server's feedback monitor keeps (server/feedback.h, docs/calibration.md).
//
// A regression output's predictive distribution is the MC-dropout mixture
// (1/K) sum_k N(p_k, s^2) of its pass outputs p_k and the noise variance
// s^2 = 1/tau (Gal & Ghahramani 2016, section 4). Its value at an observed y
// gives the probability integral transform (PIT: the CDF at y, uniform on
// [0, 1] when the predictive is honest) and the log-likelihood (the paper's
// test log-likelihood, by log-sum-exp). Classification: the Brier score,
// the expected calibration error and the AUROC of an uncertainty score for
// telling wrong answers from right ones. Adaptive conformal inference (Gibbs
// & Candes 2021) moves a miscoverage level by the errors it sees.

#ifndef MCDROP_CORE_SCORING_H_
#define MCDROP_CORE_SCORING_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace mcdrop {

// At most `max_points` values standing for the T samples `samples[t *
// stride]`, written to `out` (room for min(T, max_points)); returns how
// many. All of them, in pass order, when T <= max_points (a copy, no sort:
// this runs for every kept prediction); otherwise the sorted samples at
// ranks floor((i + 0.5) T / max_points), a stratified summary of the
// empirical distribution (every point stands for T / max_points samples;
// NaN samples sort last). T >= 1, max_points >= 1.
int StratifiedPoints(const float* samples, int64_t stride, int T,
                     int max_points, float* out);

// The mixture's CDF at y: (1/K) sum_k Phi((y - p_k) / s). With s == 0, the
// share of points below y plus half of those equal to it. NaN when K == 0.
double MixtureCdfAt(absl::Span<const float> points, double s, double y);

// log((1/K) sum_k N(y; p_k, s^2)), s > 0, by log-sum-exp (finite far in
// the tails). NaN when K == 0 or s <= 0.
double MixtureLogDensity(absl::Span<const float> points, double s, double y);

// sum_k (p_k - [k == label])^2; label in [0, probs.size()).
double BrierScore(absl::Span<const double> probs, int label);

// The expected calibration error with `bins` equal-width confidence bins
// over [0, 1]: sum_b (n_b / n) |accuracy_b - mean confidence_b| (Guo et al.
// 2017). `confidence` and `correct` have one entry per prediction (NaN
// confidences are left out); NaN when none is left. A confidence of exactly
// 1 falls in the last bin.
double ExpectedCalibrationError(absl::Span<const double> confidence,
                                absl::Span<const uint8_t> correct, int bins);

// The area under the ROC curve of `score` for telling the positives from
// the rest: the probability that a random positive scores above a random
// negative, ties counting one half (the Mann-Whitney U / (n+ n-)); NaN
// scores are left out. NaN when either class is then empty.
double Auroc(absl::Span<const double> score,
             absl::Span<const uint8_t> positive);

// One step of adaptive conformal inference: alpha + rate * (target_alpha -
// miss), miss being 1 when the last interval or set missed the observation.
// Unclamped, as in Gibbs & Candes (2021): below 0 the next set is
// everything, above 1 it is empty (ConformalQuantile's (0, 1) domain:
// use AdaptedQuantile).
inline double AciStep(double alpha, double target_alpha, double rate,
                      bool miss) {
  return alpha + rate * (target_alpha - (miss ? 1.0 : 0.0));
}

// The conformal quantile at level 1 - alpha of `sorted` scores, for any
// alpha: +infinity when alpha <= 0 (or the level needs more rows than there
// are), 0 when alpha >= 1 (only a perfect score is inside).
double AdaptedQuantile(absl::Span<const double> sorted, double alpha);

}  // namespace mcdrop

#endif  // MCDROP_CORE_SCORING_H_
