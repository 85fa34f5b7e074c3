// Copyright 2026 The mcdrop Authors.

#include "core/adaptive.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mcdrop {
namespace {

// Copies row `from` of a [rows x D] field to row `to` of another (nothing
// when the field is unused, i.e. empty).
template <typename Field>
void CopyCells(const Field& src, int from, int D, Field* dst, int to) {
  if (src.empty()) return;
  std::copy_n(src.begin() + static_cast<size_t>(from) * D, D,
              dst->begin() + static_cast<size_t>(to) * D);
}

// Copies one of a per-row field's values (nothing when it is unused).
template <typename Field>
void CopyOne(const Field& src, int from, Field* dst, int to) {
  if (!src.empty()) (*dst)[to] = src[from];
}

// Copies row `from_row` of every per-row field of `from` (a round on a
// subset of rows) to row `to_row` of `to` (the whole request).
void CopyRow(const Prediction& from, int from_row, Prediction* to, int to_row) {
  const int D = from.outputs;
  CopyCells(from.mean, from_row, D, &to->mean, to_row);
  CopyCells(from.variance, from_row, D, &to->variance, to_row);
  CopyCells(from.model_variance, from_row, D, &to->model_variance, to_row);
  CopyCells(from.votes, from_row, D, &to->votes, to_row);
  CopyOne(from.predicted_class, from_row, &to->predicted_class, to_row);
  CopyOne(from.entropy, from_row, &to->entropy, to_row);
  CopyOne(from.mutual_information, from_row, &to->mutual_information, to_row);
  CopyOne(from.variation_ratio, from_row, &to->variation_ratio, to_row);
  CopyOne(from.expected_entropy, from_row, &to->expected_entropy, to_row);
}

// The rounds of one adaptive request, kept alive by each round's completion.
struct Rounds {
  Engine* engine = nullptr;
  std::shared_ptr<const Model> model;
  const float* data = nullptr;  // the inputs, [B x cols] row-major
  int B = 0, D = 0;
  Eigen::Index cols = 0;
  PredictOptions options;
  AdaptiveOptions adaptive;
  std::function<void(absl::StatusOr<AdaptivePrediction>)> done;
  std::function<bool(const AdaptivePrediction&)> on_round;

  AdaptivePrediction out;
  std::shared_ptr<RunningStats> stats;  // the active rows', in their order
  std::vector<int> active;              // rows still running, ascending
  int T = 0;                            // passes each active row has run
  std::vector<float> gathered;          // the active rows' inputs

  // The standard error of row r's output d after T passes, and whether the
  // targets hold for it.
  bool Meets(int r, int d, double* se) const {
    const Prediction& p = out.prediction;
    const size_t i = static_cast<size_t>(r) * D + d;
    *se = std::sqrt(p.model_variance[i] / (T - 1));
    const double scale = p.task == Task::kRegression
                             ? std::sqrt(p.variance[i])
                             : std::sqrt(p.mean[i] * (1.0 - p.mean[i]));
    const double a = adaptive.target_abs, rel = adaptive.target_rel;
    if (a == 0 && rel == 0) return false;  // no target: run to the cap
    return (a == 0 || *se <= a) && (rel == 0 || *se <= rel * scale);
  }

  // Merges a finished round of the active rows; returns the rows that go on.
  std::vector<int> Merge(Prediction round, int n) {
    T += n;
    ++out.rounds;
    Prediction& acc = out.prediction;
    if (out.rounds == 1) {
      acc = round;  // every row ran; the per-row fields are sized
      acc.sample_values.clear();
    } else {
      acc.tiles += round.tiles;
      acc.run_seconds += round.run_seconds;
      for (size_t j = 0; j < active.size(); ++j) {
        CopyRow(round, static_cast<int>(j), &acc, active[j]);
      }
    }
    std::vector<int> next, going_on;  // rows, and their places in the round
    for (size_t j = 0; j < active.size(); ++j) {
      const int r = active[j];
      if (options.return_samples) {
        std::vector<float>& mine = out.row_samples[r];
        const int rows = static_cast<int>(active.size());
        for (int t = 0; t < n; ++t) {
          const float* v =
              round.sample_values.data() +
              (static_cast<size_t>(t) * rows + j) * static_cast<size_t>(D);
          mine.insert(mine.end(), v, v + D);
        }
      }
      bool met = true;
      for (int d = 0; d < D; ++d) {
        double se;
        met &= Meets(r, d, &se);
        out.standard_error[static_cast<size_t>(r) * D + d] = se;
      }
      out.samples_per_row[r] = T;
      out.target_met[r] = met;
      out.row_passes += n;
      if (!met && T < adaptive.max_samples) {
        next.push_back(r);
        going_on.push_back(static_cast<int>(j));
      }
    }
    acc.samples = T;  // the largest T: the rows still going have it
    stats = going_on.size() == active.size()
                ? std::move(round.stats)
                : std::make_shared<RunningStats>(
                      SelectRows(*round.stats, going_on));
    return next;
  }

  // The next round's options: its passes, its rows' ids and statistics.
  PredictOptions RoundOptions(int n) {
    PredictOptions opt = options;
    opt.first_sample = static_cast<uint32_t>(T);
    opt.samples = n;
    opt.keep_stats = true;
    opt.row_ids.clear();
    if (T == 0) return opt;
    opt.resume = stats;
    if (static_cast<int>(active.size()) == B) return opt;
    gathered.resize(active.size() * static_cast<size_t>(cols));
    for (size_t j = 0; j < active.size(); ++j) {
      std::copy_n(data + static_cast<size_t>(active[j]) * cols, cols,
                  gathered.begin() + j * static_cast<size_t>(cols));
      opt.row_ids.push_back(static_cast<uint32_t>(active[j]));
    }
    return opt;
  }
};

void Finish(const std::shared_ptr<Rounds>& r) {
  r->out.finished = true;
  r->out.prediction.samples = *std::max_element(r->out.samples_per_row.begin(),
                                                r->out.samples_per_row.end());
  auto done = std::move(r->done);
  done(std::move(r->out));
}

// Starts the round of `n` passes for the active rows.
void StartRound(std::shared_ptr<Rounds> r, int n) {
  PredictOptions opt = r->RoundOptions(n);
  const bool all = opt.row_ids.empty();
  const InputMatrix inputs(all ? r->data : r->gathered.data(),
                           static_cast<Eigen::Index>(r->active.size()),
                           r->cols);
  Engine* engine = r->engine;
  auto model = r->model;
  engine->PredictAsync(
      std::move(model), inputs, std::move(opt),
      [r = std::move(r), n](absl::StatusOr<Prediction> p) mutable {
        if (!p.ok()) return r->done(p.status());
        r->active = r->Merge(*std::move(p), n);
        if (r->active.empty()) return Finish(r);
        if (r->on_round && !r->on_round(r->out)) {
          return r->done(absl::CancelledError("stopped by the caller"));
        }
        // T doubles, up to the cap.
        const int next = std::min(r->T, r->adaptive.max_samples - r->T);
        StartRound(std::move(r), next);
      });
}

}  // namespace

AdaptivePrediction FixedAnswer(Prediction prediction) {
  AdaptivePrediction a;
  const int B = prediction.rows, D = prediction.outputs, T = prediction.samples;
  a.samples_per_row.assign(B, T);
  a.target_met.assign(B, false);
  a.standard_error.assign(static_cast<size_t>(B) * D, 0.0);
  if (T >= 2 && prediction.model_variance.size() == a.standard_error.size()) {
    for (size_t i = 0; i < a.standard_error.size(); ++i) {
      a.standard_error[i] = std::sqrt(prediction.model_variance[i] / (T - 1));
    }
  }
  a.rounds = 1;
  a.row_passes = static_cast<int64_t>(B) * T;
  a.finished = true;
  a.prediction = std::move(prediction);
  return a;
}

absl::Status ValidateAdaptive(const Model& model, const PredictOptions& options,
                              const AdaptiveOptions& a) {
  if (options.mode != PredictMode::kMonteCarlo) {
    return absl::InvalidArgumentError(
        "a standard-error target needs Monte-Carlo mode");
  }
  if (!options.interval_levels.empty()) {
    return absl::InvalidArgumentError(
        "intervals are not computed with a standard-error target: ask for a "
        "fixed number of samples");
  }
  if (!(a.target_abs >= 0) || !(a.target_rel >= 0) ||
      !std::isfinite(a.target_abs) || !std::isfinite(a.target_rel)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "standard-error targets must be finite and >= 0, got absolute ",
        a.target_abs, " and relative ", a.target_rel));
  }
  if (a.min_samples < 2 || a.min_samples > a.max_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("need 2 <= min_samples <= max_samples, got ",
                     a.min_samples, " and ", a.max_samples));
  }
  (void)model;
  return absl::OkStatus();
}

void PredictAdaptiveAsync(
    Engine& engine, std::shared_ptr<const Model> model, InputMatrix inputs,
    PredictOptions options, AdaptiveOptions adaptive,
    std::function<void(absl::StatusOr<AdaptivePrediction>)> done,
    std::function<bool(const AdaptivePrediction&)> on_round) {
  if (absl::Status s = ValidateAdaptive(*model, options, adaptive); !s.ok()) {
    return done(s);
  }
  auto r = std::make_shared<Rounds>();
  r->engine = &engine;
  r->model = std::move(model);
  r->data = inputs.data();
  r->B = static_cast<int>(inputs.rows());
  r->D = r->model->output_size();
  r->cols = inputs.cols();
  r->options = std::move(options);
  r->options.resume = nullptr;
  r->adaptive = adaptive;
  r->done = std::move(done);
  r->on_round = std::move(on_round);
  for (int b = 0; b < r->B; ++b) r->active.push_back(b);
  AdaptivePrediction& out = r->out;
  out.samples_per_row.assign(r->B, 0);
  out.standard_error.assign(static_cast<size_t>(r->B) * r->D, 0.0);
  out.target_met.assign(r->B, false);
  if (r->options.return_samples) out.row_samples.resize(r->B);
  StartRound(std::move(r), adaptive.min_samples);
}

absl::StatusOr<AdaptivePrediction> PredictAdaptive(
    Engine& engine, const Model& model, InputMatrix inputs,
    PredictOptions options, const AdaptiveOptions& adaptive) {
  // The caller owns the model; it outlives this call, which waits.
  std::shared_ptr<const Model> unowned(&model, [](const Model*) {});
  // std primitives, as Engine::Predict, so that ThreadSanitizer sees them.
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  absl::StatusOr<AdaptivePrediction> result;
  PredictAdaptiveAsync(engine, std::move(unowned), inputs, std::move(options),
                       adaptive, [&](absl::StatusOr<AdaptivePrediction> p) {
                         std::lock_guard<std::mutex> lock(mu);
                         result = std::move(p);
                         finished = true;
                         cv.notify_all();
                       });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished; });
  return result;
}

}  // namespace mcdrop
