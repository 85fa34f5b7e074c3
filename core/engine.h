// Copyright 2026 The mcdrop Authors.
//
// The Monte-Carlo-dropout inference engine.
//
// For each input row the engine runs T stochastic forward passes with dropout
// left on (or one deterministic pass with dropout off) and reduces them to the
// predictive statistics of Gal & Ghahramani (2016) (docs/api.md describes
// the response fields):
//
//   regression:      mean_d = (1/T) sum_t y_td
//                    var_d  = 1/tau + (1/T) sum_t y_td^2 - mean_d^2
//   classification:  pbar = (1/T) sum_t softmax(z_t), class = argmax pbar,
//                    H = -sum_c pbar_c log pbar_c,
//                    MI = H - (1/T) sum_t H(softmax(z_t)),
//                    variation ratio = 1 - (modal count of argmax_t) / T.
//
// How it runs (docs/performance.md): the (row, sample) pairs of a request are
// cut into tiles; each tile stacks its pairs as the columns of one matrix and
// goes through each layer as one GEMM. Layers before the first nonzero drop
// rate are computed once per row. Masks come from a counter-based generator
// (ARS-4x32-7) keyed by (seed, row, sample, layer, unit) (mask.h). Tiles run
// on the engine's thread pool; their per-sample outputs are folded into
// double-precision running statistics in an order fixed by the passes'
// indices (pass_stats.h: leaves of kLeafPasses in pass order, then a binary
// tree), so memory is bounded independent of T (apart from samples returned
// or kept for intervals) and a seed gives bit-identical results whatever the
// number of threads, the tile sizes, or how the passes are split into rounds
// or ranges run on other servers.

#ifndef MCDROP_CORE_ENGINE_H_
#define MCDROP_CORE_ENGINE_H_

#include <Eigen/Core>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/intervals.h"
#include "core/model.h"
#include "core/pass_stats.h"
#include "core/thread_pool.h"

namespace mcdrop {

using RowMajorMatrixXf =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A batch of inputs [B x Q], row-major, viewed in place (no copy).
using InputMatrix = Eigen::Map<const RowMajorMatrixXf>;

enum class PredictMode {
  kMonteCarlo,     // T passes with dropout on
  kDeterministic,  // one pass with dropout off: the standard network output
};

struct PredictOptions {
  PredictMode mode = PredictMode::kMonteCarlo;
  // T, the number of stochastic passes (MC mode); must be >= 1. Ignored in
  // deterministic mode.
  int samples = 100;
  // Keys the dropout masks. The same seed, inputs and options give
  // bit-identical results.
  uint64_t seed = 1;
  // Pass t of this request uses the masks (and predictive noise) of pass
  // first_sample + t, so requests with first_sample 0, T1, T1 + T2, ...
  // compute exactly the passes of one request of T1 + T2 + ... (the
  // building block of rounds of passes). first_sample + samples < 2^32.
  uint32_t first_sample = 0;
  // The generator's row of each input row, for masks and predictive noise:
  // empty means row b is row b; otherwise one id per row. A request on a
  // subset of another request's rows, with their ids, computes exactly
  // those rows' passes of the other (how adaptive rounds continue only the
  // rows that have not met their target).
  std::vector<uint32_t> row_ids;
  // MC mode: continue these statistics (of the passes [resume->first_pass,
  // first_sample) of the same rows and model: first_sample must be
  // resume->first_pass + resume->passes) instead of starting from none: the
  // result covers resume->passes + samples passes, and equals bit for bit
  // what one request of them all gives (pass_stats.h: the order of the
  // reduction depends on the passes' indices alone). Its rows and outputs
  // must match the request's.
  std::shared_ptr<const RunningStats> resume;
  // MC mode: return the statistics in Prediction::stats (for a later resume,
  // or to merge with other runs of the same request's passes: a request of
  // first_sample a and samples b - a, with a and b multiples of kLeafPasses
  // or b the whole request's T, is one range of it, pass_stats.h).
  bool keep_stats = false;
  // Regression: add the observation noise 1/tau to the variance (the
  // predictive variance); false gives the model (epistemic) part alone.
  bool include_noise = true;
  // Return every pass's output: regression values, or classification
  // probabilities, laid out [T x B x D].
  bool return_samples = false;
  // Without return_samples: return the outputs of the first
  // min(T, keep_first_samples) passes in sample_values, [K x B x D] (with
  // interval levels, all T are kept for them and returned). The passes are
  // i.i.d. given the input, so they are a random sample of the T. 0: none.
  // Results are unchanged. (The server's feedback monitor keeps them.)
  int keep_first_samples = 0;
  // Regression, with return_samples and include_noise: the returned samples
  // are draws from the predictive distribution, y = f_t(x) + N(0, 1/tau)
  // (draws.h), instead of the pass outputs f_t(x) alone. The statistics and
  // intervals are unchanged (they already account for the noise).
  bool predictive_draws = false;
  // Tiling: samples and rows per tile; 0 chooses automatically. They change
  // only speed, never results.
  int samples_per_tile = 0;
  int rows_per_tile = 0;
  // Checked between tiles (and between outputs of the interval step); when
  // it returns true the request stops with CANCELLED. May be called from any
  // pool thread; must be thread-safe.
  std::function<bool()> should_stop;
  // Checked between tiles (and between outputs of the interval step); once
  // passed the request stops with DEADLINE_EXCEEDED.
  absl::Time deadline = absl::InfiniteFuture();
  // Measure the time spent making masks (a few clock reads per tile).
  bool collect_timing = false;
  // Regression only: central predictive intervals of every output at these
  // levels, each in (0, 1) (intervals.h: the quantiles of the mixture of
  // N(y_t, 1/tau), or of the samples alone without include_noise). They are
  // computed on the pool after the passes, output by output, with the
  // cancellation and deadline checked between outputs. Keeps the T x B x D
  // samples while the request runs.
  std::vector<double> interval_levels;
};

struct Prediction {
  Task task = Task::kRegression;
  int rows = 0;     // B
  int outputs = 0;  // D: regression outputs, or classes
  int samples = 0;  // T: the passes the statistics cover (1 deterministic)
  int levels = 0;   // interval levels per output

  // [B x D], row-major. Regression: predictive mean in output units.
  // Classification: mean probabilities pbar.
  std::vector<double> mean;
  // Regression only, [B x D]: the predictive variance (with 1/tau when
  // include_noise).
  std::vector<double> variance;
  // [B x D]: the variance of the pass outputs about their mean (divided by
  // T): regression, the model (epistemic) part of the variance; classification,
  // the spread of each class probability over the passes (MC mode).
  std::vector<double> model_variance;

  // Classification only, one per row.
  std::vector<int> predicted_class;
  std::vector<double> entropy;             // nats
  std::vector<double> mutual_information;  // nats, >= 0
  std::vector<double> variation_ratio;
  // The mean over passes of each pass's entropy (nats): entropy minus it is
  // the mutual information before clamping at 0.
  std::vector<double> expected_entropy;
  // [B x D]: the passes whose most probable class was d.
  std::vector<int> votes;

  // [T x B x D] when return_samples: this request's own passes (with resume,
  // `samples` counts the earlier ones too). With keep_first_samples instead:
  // [K x B x D], the first K of them (all T with interval levels).
  std::vector<float> sample_values;

  // With keep_stats (MC mode): the running statistics of all its passes.
  std::shared_ptr<RunningStats> stats;

  // [B x D x levels] when interval_levels were asked for.
  std::vector<IntervalBounds> intervals;

  // Work done.
  int64_t tiles = 0;
  // Wall-clock: waiting for a pool thread, and from start to the result.
  double queue_seconds = 0.0;
  double run_seconds = 0.0;
  // Summed over threads; filled only with collect_timing.
  double mask_seconds = 0.0;     // making and applying masks
  double compute_seconds = 0.0;  // whole tiles (masks included)

  double Mean(int row, int d) const { return mean[row * outputs + d]; }
  double Variance(int row, int d) const { return variance[row * outputs + d]; }
  float Sample(int t, int row, int d) const {
    return sample_values[(static_cast<int64_t>(t) * rows + row) * outputs + d];
  }
  const IntervalBounds& Interval(int row, int d, int level) const {
    return intervals[(static_cast<size_t>(row) * outputs + d) * levels + level];
  }
};

struct EngineOptions {
  // Worker threads; 0 means one per hardware thread.
  int threads = 0;
  // Run requests of at most one small tile on the calling thread (see
  // PredictAsync); false hands every request to the pool.
  bool inline_small_requests = true;
};

// Owns a fixed thread pool and runs predictions on it. Thread-safe: any number
// of threads may call Predict / PredictAsync at once.
class Engine {
 public:
  using Callback = std::function<void(absl::StatusOr<Prediction>)>;

  // Requests of at most this many multiply-adds run inline (see
  // PredictAsync).
  static constexpr int64_t kInlineMultiplyAdds = 262144;

  explicit Engine(EngineOptions options = {});
  ~Engine();  // finishes queued work first
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // At most this many activation values of one request at once in the
  // layers before the first dropout (rows x the model's widest layer).
  static constexpr int64_t kMaxPrefixValues = int64_t{1} << 28;

  // Checks a request without running it: inputs are [B x Q] with B >= 1, Q
  // equal to the model's input size, every value finite; B x the widest
  // layer within kMaxPrefixValues; samples >= 1 in MC mode; interval levels
  // in (0, 1) and for a regression model only; predictive draws only for a
  // regression model with return_samples and include_noise. InvalidArgument
  // with a message saying what is wrong.
  static absl::Status Validate(const Model& model,
                               const Eigen::Ref<const RowMajorMatrixXf>& inputs,
                               const PredictOptions& options);

  // Runs the request on the pool and calls `done` exactly once with the
  // prediction or an error. A request of at most one small tile (under
  // kInlineMultiplyAdds, without intervals) runs on the calling thread before
  // PredictAsync returns, sparing the hand-off to a pool thread and back;
  // others call `done` from a pool thread. Results are the same either way.
  // Errors: (InvalidArgument from Validate,
  // CANCELLED, DEADLINE_EXCEEDED). The engine shares ownership of `model`
  // for as long as any task of the request may run (the way a serving handle
  // pins a servable), so a model version may be unloaded at any time. The
  // memory behind `inputs` need only stay valid until `done` has been called.
  // Once `done` runs, no task of the request touches the model, the inputs
  // or `options` (should_stop included) again. Never blocks on the
  // computation.
  void PredictAsync(std::shared_ptr<const Model> model, InputMatrix inputs,
                    PredictOptions options, Callback done);

  // Blocking form of PredictAsync for a model the caller owns: `model` may be
  // destroyed as soon as this returns. Must not be called from a pool thread.
  absl::StatusOr<Prediction> Predict(const Model& model, InputMatrix inputs,
                                     const PredictOptions& options);

  int threads() const { return pool_.size(); }
  // Pool threads computing right now, and tasks waiting for one.
  int busy_threads() const { return pool_.busy(); }
  int queued_tasks() const { return pool_.queued(); }

  struct Request;  // implementation detail, engine.cc
  struct Workspace;

 private:
  friend struct Request;
  void Start(std::shared_ptr<Request> request);
  // Takes tiles of passes until none is left.
  void Work(const std::shared_ptr<Request>& request);
  // Called once, by the thread that completed the passes: delivers the
  // result, or starts the interval step on the pool.
  void PassesFinished(const std::shared_ptr<Request>& request);
  // Takes outputs whose intervals are still to compute until none is left.
  void IntervalWork(const std::shared_ptr<Request>& request);
  // The calling thread's buffers: its own as a pool thread, else a
  // thread-local set (a request run inline on the caller's thread).
  Workspace& CurrentWorkspace();

  const bool inline_small_requests_;
  // Declared before pool_ so that they outlive the pool's threads: the pool's
  // destructor still runs queued tasks, which use them.
  std::vector<std::unique_ptr<Workspace>> workspaces_;  // one per pool thread
  ThreadPool pool_;
};

}  // namespace mcdrop

#endif  // MCDROP_CORE_ENGINE_H_
