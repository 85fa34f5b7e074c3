// Copyright 2026 The mcdrop Authors.
//
// The scores of predictions against known targets that the trainer's
// evaluation (train/trainer.h) and the client's evaluators
// (client/evaluation.h) share, so that both compute them the same way: the
// test log-likelihood of Gal & Ghahramani (2016) from T sampled outputs, the
// root mean squared error, the coverage of central intervals and the expected
// calibration error of a classifier; and those the server's feedback monitor
// (server/feedback.h) adds: the Brier score, the AUROC of an uncertainty
// score for telling wrong answers from right ones, and a bounded summary of
// T sampled outputs.
//
// Plain arithmetic on numbers the caller passes: no I/O, no allocation beyond
// the accumulators' own small state. The accumulators are not thread-safe; use
// one per thread.

#ifndef MCDROP_SCORING_SCORING_H_
#define MCDROP_SCORING_SCORING_H_

#include <cstdint>
#include <vector>

namespace mcdrop {

// The test log-likelihood of one target row y (D values at `target`) under
// the mixture of T Gaussians N(y_t, 1/tau I) centred on the T sampled outputs
// of that row:
//   ll = logsumexp_t(-tau/2 |y - y_t|^2) - log T - D/2 log(2 pi) + D/2 log tau.
// Output d of sample t is samples[t * stride + d] (stride >= D; for the
// [T, B, D] layout of a prediction, pass the row's first value and
// stride = B * D). Needs T >= 1, D >= 1 and tau > 0; reads T * D values.
double SampleLogLikelihood(const float* samples, int64_t stride, int T, int D,
                           const float* target, double tau);

// Root mean squared error over every (target, prediction) pair added.
class SquaredError {
 public:
  void Add(double target, double prediction);
  int64_t count() const { return count_; }
  // sqrt(sum of squared errors / count); 0 when nothing was added.
  double Rmse() const;

 private:
  double sum_ = 0.0;
  int64_t count_ = 0;
};

// How often targets fall inside their intervals (of one nominal level), and
// the intervals' mean width.
class IntervalCoverage {
 public:
  // A target counts as covered when lower <= target <= upper.
  void Add(double target, double lower, double upper);
  int64_t count() const { return count_; }
  // Fraction covered and mean of upper - lower; 0 when nothing was added.
  double Coverage() const;
  double MeanWidth() const;

 private:
  int64_t count_ = 0, covered_ = 0;
  double width_ = 0.0;
};

// Expected calibration error of a classifier (Guo et al. 2017): the
// predictions are binned by confidence (the probability of the predicted
// class) into `bins` equal-width bins of [0, 1], and
//   ECE = sum over bins of (n_bin / n) |accuracy_bin - mean confidence_bin|.
class CalibrationBins {
 public:
  // bins >= 1 (fewer are taken as 1).
  explicit CalibrationBins(int bins);
  // Confidence 1 falls into the last bin. Any double is accepted: values
  // below 0 and NaN count in the first bin, values above 1 in the last (a NaN
  // confidence makes the error NaN, it never indexes out of the bins).
  void Add(double confidence, bool correct);
  int64_t count() const { return count_; }
  // 0 when nothing was added.
  double ExpectedCalibrationError() const;
  // The bin `confidence` falls into, in [0, bins).
  int BinOf(double confidence) const;

 private:
  struct Bin {
    int64_t n = 0, correct = 0;
    double confidence = 0.0;  // sum
  };
  std::vector<Bin> bins_;
  int64_t count_ = 0;
};

// At most `max_points` values standing for the T samples `samples[t *
// stride]`, written to `out` (room for min(T, max_points)); returns how
// many. All of them, in pass order, when T <= max_points (a copy, no sort:
// the server runs this for every prediction it keeps); otherwise the sorted
// samples at ranks floor((i + 0.5) T / max_points), a stratified summary of
// the empirical distribution (every point stands for T / max_points
// samples; NaN samples sort last). T >= 1, max_points >= 1.
int StratifiedPoints(const float* samples, int64_t stride, int T,
                     int max_points, float* out);

// sum_k (p_k - [k == label])^2 over the `k` class probabilities at `probs`;
// label in [0, k).
double BrierScore(const double* probs, int k, int label);

// The area under the ROC curve of `score` for telling the positives from
// the rest: the probability that a random positive scores above a random
// negative, ties counting one half (the Mann-Whitney U / (n+ n-)). NaN
// scores are left out; NaN when either class is then empty.
double Auroc(const std::vector<double>& score,
             const std::vector<uint8_t>& positive);

}  // namespace mcdrop

#endif  // MCDROP_SCORING_SCORING_H_
