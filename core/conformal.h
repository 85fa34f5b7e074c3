// Copyright 2026 The mcdrop Authors.
//
// Split conformal prediction on top of MC dropout (docs/calibration.md).
//
// A model's predictive distribution, from T passes, is scored on n labelled
// calibration rows the model did not train on. For a level a in (0, 1), the
// ceil((n + 1) a)-th smallest score q_a turns the predictive into a set that
// holds a new exchangeable row's target with probability at least a
// (marginally, over the calibration draw and the new row; Vovk et al. 2005,
// Lei et al. 2018), whatever the model and however wrong its uncertainty.
//
// Scores:
// - Regression, "normalized_residual": |y - mean| / std, with std the
//   predictive std (model spread plus 1/tau). The interval mean +- q_a std
//   keeps the model's per-input width (wide where the passes disagree or the
//   model is unsure), so calibration rescales the MC-dropout spread by one
//   factor per level instead of adding a constant width everywhere (the
//   plain residual |y - mean| would); it needs only the mean and variance, so
//   it serves in every mode (fixed or adaptive T) at no cost.
// - Classification, "lac": 1 - p_y (Sadinle, Lei & Wasserman 2019): the
//   smallest sets on average; the set is {k : p_k >= 1 - q_a}.
// - Classification, "aps": the summed (mean) probabilities of the classes
//   ranked at or above y, ties broken by class index (Romano, Sesia & Candes
//   2020, without randomisation, so it covers at least as much): sets grow as
//   the predictive spreads, which gives better coverage per kind of input.

#ifndef MCDROP_CORE_CONFORMAL_H_
#define MCDROP_CORE_CONFORMAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mcdrop {

enum class ConformalScore { kNormalizedResidual, kLac, kAps };
// "normalized_residual", "lac", "aps".
absl::string_view ConformalScoreName(ConformalScore score);
// InvalidArgument naming the accepted values.
absl::StatusOr<ConformalScore> ParseConformalScore(absl::string_view name);
inline bool IsClassificationScore(ConformalScore s) {
  return s != ConformalScore::kNormalizedResidual;
}

// A model's calibration, stored in its file (metadata "calibration").
struct Calibration {
  ConformalScore score = ConformalScore::kNormalizedResidual;
  int samples = 0;      // T of the calibration passes
  uint64_t seed = 0;    // seed of the first batch of calibration passes
  std::string source;   // what the calibration rows were (free text)
  std::string created;  // when, UTC, RFC 3339
  // Each list sorted ascending, all of one length (the rows), every value
  // finite and >= 0: one list per output (regression) or one (classifier).
  std::vector<std::vector<double>> scores;

  int64_t rows() const {
    return scores.empty() ? 0 : static_cast<int64_t>(scores[0].size());
  }
  bool operator==(const Calibration& o) const;
};

// The split-conformal quantile of `sorted` (ascending, n >= 1) at `level` in
// (0, 1): the k-th smallest, k = ceil((n + 1) level - 1e-9) (the tolerance
// keeps exact products such as 20 x 0.95 from rounding up); +infinity when
// k > n (too few rows for that level: the only set with the guarantee is
// everything), and for an empty list or a level outside (0, 1).
double ConformalQuantile(absl::Span<const double> sorted, double level);

// The largest level whose quantile is finite with n rows: n / (n + 1).
inline double MaxFiniteLevel(int64_t n) {
  return static_cast<double>(n) / static_cast<double>(n + 1);
}

// One step of adaptive conformal inference (Gibbs & Candes 2021): alpha +
// rate * (target_alpha - miss), miss being 1 when the last interval or set
// missed the observation. Unclamped, as in the paper: below 0 the next set
// is everything, above 1 it is empty (use AdaptedQuantile).
inline double AciStep(double alpha, double target_alpha, double rate,
                      bool miss) {
  return alpha + rate * (target_alpha - (miss ? 1.0 : 0.0));
}

// The conformal quantile at level 1 - alpha of `sorted` scores, for any
// alpha: +infinity when alpha <= 0 (or the level needs more rows than there
// are), 0 when alpha >= 1 (only a perfect score is inside).
double AdaptedQuantile(absl::Span<const double> sorted, double alpha);

// |y - mean| / std; std > 0.
double NormalizedResidual(double y, double mean, double std);

// The score of label `y` (in [0, probs.size())) under a classification score.
double ClassScore(ConformalScore score, absl::Span<const double> probs, int y);

// {k : ClassScore(score, probs, k) <= q}, ordered by decreasing probability
// (ties by class index). May be empty (lac) when no class is likely enough.
std::vector<int> PredictionSet(ConformalScore score,
                               absl::Span<const double> probs, double q);

// The calibration as the JSON of the "calibration" metadata key; doubles are
// written so that they read back bit for bit.
std::string CalibrationToJson(const Calibration& c);
// Parses and checks the JSON (at most kMaxCalibrationJsonBytes):
// InvalidArgument naming the field and what is wrong (unknown method or
// score, T < 1, and what ValidateCalibration refuses).
absl::StatusOr<Calibration> ParseCalibration(absl::string_view json);
inline constexpr size_t kMaxCalibrationJsonBytes = size_t{32} << 20;

// The score lists: at least one, none empty, all of one length, each sorted
// ascending, every value finite and >= 0. InvalidArgument naming the list.
absl::Status ValidateCalibration(const Calibration& c);

}  // namespace mcdrop

#endif  // MCDROP_CORE_CONFORMAL_H_
