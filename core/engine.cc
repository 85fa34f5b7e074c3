// Copyright 2026 The mcdrop Authors.

#include "core/engine.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unsupported/Eigen/SpecialFunctions>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/activation.h"
#include "core/draws.h"
#include "core/mask.h"
#include "core/stage.h"

namespace mcdrop {
namespace {

using MatrixMap = Eigen::Map<Eigen::MatrixXf, Eigen::Aligned32>;

constexpr int kColumnAlign = 8;

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Softmax of one column of logits in double precision; returns the entropy of
// the distribution (0 log 0 = 0) and writes the probabilities and argmax.
double Softmax(const float* z, int n, double* p, int* argmax) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (z[i] > z[best]) best = i;
  }
  const double zmax = z[best];
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    p[i] = std::exp(static_cast<double>(z[i]) - zmax);
    sum += p[i];
  }
  double entropy = 0.0;
  for (int i = 0; i < n; ++i) {
    p[i] /= sum;
    if (p[i] > 0.0) entropy -= p[i] * std::log(p[i]);
  }
  *argmax = best;
  return entropy;
}

template <typename Vector>
void Grow(Vector& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

struct Engine::Workspace {
  std::vector<float, Eigen::aligned_allocator<float>> a, b;
  std::vector<uint8_t> bits;
  std::vector<MaskColumn> columns;
  std::vector<float> channel;  // dropout2d's per-channel factors
  std::vector<float> patches;  // a convolution's patches
  IntervalScratch intervals;
};

// One tile's finished output, waiting for its turn to be merged.
struct TileOutput {
  bool ready = false;
  std::vector<float> values;    // [cols x D]: regression outputs
  std::vector<double> probs;    // [cols x D]: classification
  std::vector<double> entropy;  // [cols]
  std::vector<int> argmax;      // [cols]
};

struct Engine::Request {
  std::shared_ptr<const Model> model;
  const float* input_data = nullptr;
  Eigen::Index input_rows = 0, input_cols = 0;
  absl::Time submitted, started;
  InputMatrix inputs() const {
    return InputMatrix(input_data, input_rows, input_cols);
  }
  PredictOptions options;
  Callback done;

  // Plan, fixed before any tile runs.
  int B = 0, D = 0, T = 0, L = 0, first = 0, max_channels = 1;
  int64_t n0 = 0;             // earlier passes the statistics continue (resume)
  bool keep_samples = false;  // for return_samples, intervals or feedback
  int kept_T = 0;             // passes whose outputs are kept (first ones)
  int rows_per_tile = 1, samples_per_tile = 1, chunks = 1, num_tiles = 0;
  int64_t max_cols = 0;
  int max_width = 0;
  Eigen::MatrixXf prefix;          // [width(first) x B]
  std::vector<DropoutMask> masks;  // by layer; unused where the rate is 0
  int window = 1;

  // std::mutex rather than absl::Mutex: Debian's abseil is not built with
  // ThreadSanitizer annotations, so TSan could not see absl::Mutex's
  // synchronisation; the standard primitives it intercepts.
  std::mutex mu;
  std::condition_variable slot_freed;  // next_merge or stop_status changed
  int next_tile ABSL_GUARDED_BY(mu) = 0;
  int next_merge ABSL_GUARDED_BY(mu) = 0;
  // Tiles or interval items taken and not yet given back; the request is not
  // finalised while any is held. A task touches the model and the options
  // only while it holds one, or under mu while the request is not finalised
  // and cannot stop (merging, and moving from passes to intervals, happen
  // when every tile is done and none can be taken).
  int in_progress ABSL_GUARDED_BY(mu) = 0;
  // The interval step: outputs (row, d) taken and finished, of B x D.
  int next_item ABSL_GUARDED_BY(mu) = 0;
  int items_done ABSL_GUARDED_BY(mu) = 0;
  bool finalized ABSL_GUARDED_BY(mu) = false;
  absl::Status stop_status ABSL_GUARDED_BY(mu);
  std::vector<TileOutput> slots ABSL_GUARDED_BY(mu);

  // Running statistics (pass_stats.h), touched only by the merging thread
  // (under mu): the leaf each row is filling, its finished blocks, and the
  // votes. The statistics begin at pass stats_first.
  int64_t stats_first = 0;
  std::vector<double> run_mean, run_m2;  // regression [B x D]
  std::vector<double> sum_p;             // classification [B x D]
  std::vector<double> sum_p2;            // [B x D], squared probabilities
  std::vector<double> sum_entropy;       // [B]
  std::vector<int64_t> class_counts;     // [B x D]
  std::vector<std::vector<PassBlock>> row_blocks;  // [B]: [D] values each
  Prediction result;

  std::atomic<int64_t> mask_ns{0};
  std::atomic<int64_t> compute_ns{0};
};

namespace {
int ThreadCount(const EngineOptions& options) {
  return options.threads > 0 ? options.threads
                             : static_cast<int>(std::max(
                                   1u, std::thread::hardware_concurrency()));
}
}  // namespace

Engine::Engine(EngineOptions options)
    : inline_small_requests_(options.inline_small_requests),
      pool_(ThreadCount(options)) {
  for (int i = 0; i < pool_.size(); ++i) {
    workspaces_.push_back(std::make_unique<Workspace>());
  }
}

Engine::~Engine() = default;

namespace {

// A request whose passes are all the same network output (no stochastic
// layer, or deterministic mode), its mean already in req.result: the spread
// figures (zero spread, every vote for the predicted class) and, with
// keep_stats in MC mode, the statistics of n0 + T equal passes.
void ConstantPassFigures(Engine::Request& req, bool mc);

// Sets up the running statistics: empty, or those of options.resume (its
// last leaf, if still filling, is filled on).
void StartStatistics(Engine::Request& req, bool classification);

// The statistics a request continues must be of its rows, outputs and task.
absl::Status ValidateResume(const Model& model, int64_t rows,
                            const PredictOptions& options) {
  const RunningStats* r = options.resume.get();
  if (r == nullptr) return absl::OkStatus();
  if (options.mode != PredictMode::kMonteCarlo ||
      !options.interval_levels.empty()) {
    return absl::InvalidArgumentError(
        "statistics are resumed in Monte-Carlo mode, without intervals");
  }
  absl::Status run =
      CheckRun(*r, model.task(), static_cast<int>(rows), model.output_size());
  if (!run.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the statistics to resume: ", run.message()));
  }
  if (r->first_pass + r->passes != options.first_sample ||
      r->passes + options.samples > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the statistics to resume (passes [", r->first_pass, ", ",
        r->first_pass + r->passes, ")) do not continue at first_sample ",
        options.first_sample, " or leave no room for ", options.samples,
        " more passes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Engine::Validate(const Model& model,
                              const Eigen::Ref<const RowMajorMatrixXf>& inputs,
                              const PredictOptions& options) {
  if (inputs.rows() < 1) {
    return absl::InvalidArgumentError(
        "the batch is empty: send at least one row");
  }
  if (inputs.cols() != model.input_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("each row must have ", model.input_size(),
                     " values for this model, got ", inputs.cols()));
  }
  if (!inputs.allFinite()) {
    for (Eigen::Index r = 0; r < inputs.rows(); ++r) {
      for (Eigen::Index c = 0; c < inputs.cols(); ++c) {
        if (!std::isfinite(inputs(r, c))) {
          return absl::InvalidArgumentError(
              absl::StrCat("input row ", r, " column ", c,
                           " is not a finite number (", inputs(r, c), ")"));
        }
      }
    }
  }
  if (options.mode == PredictMode::kMonteCarlo && options.samples < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the number of samples must be >= 1, got ", options.samples));
  }
  const int64_t widest = model.max_width();
  if (inputs.rows() * widest > Engine::kMaxPrefixValues) {
    return absl::InvalidArgumentError(absl::StrCat(
        inputs.rows(), " rows of this model need ", inputs.rows() * widest,
        " activation values at once, over the bound of 2^28: send at most ",
        Engine::kMaxPrefixValues / widest, " rows per request"));
  }
  if (options.mode == PredictMode::kMonteCarlo &&
      int64_t{options.first_sample} + options.samples > 0xFFFFFFFFll) {
    return absl::InvalidArgumentError(
        absl::StrCat("first_sample ", options.first_sample, " + samples ",
                     options.samples, " exceeds the 2^32 passes a seed has"));
  }
  if (!options.row_ids.empty() &&
      options.row_ids.size() != static_cast<size_t>(inputs.rows())) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.row_ids.size(), " row ids for ", inputs.rows(),
                     " rows: give one per row, or none"));
  }
  if (options.samples_per_tile < 0 || options.rows_per_tile < 0) {
    return absl::InvalidArgumentError("tile sizes must be >= 0");
  }
  if (!options.interval_levels.empty() && model.task() != Task::kRegression) {
    return absl::InvalidArgumentError(
        "interval levels apply to regression models only");
  }
  if (options.predictive_draws &&
      (model.task() != Task::kRegression || !options.return_samples ||
       !options.include_noise)) {
    return absl::InvalidArgumentError(
        "predictive draws (y = f + noise of variance 1/tau) are for "
        "regression models, with the samples returned and the noise "
        "included");
  }
  for (double level : options.interval_levels) {
    if (!(level > 0 && level < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("interval level ", level, " is not in (0, 1)"));
    }
  }
  return ValidateResume(model, inputs.rows(), options);
}

absl::StatusOr<Prediction> Engine::Predict(const Model& model,
                                           InputMatrix inputs,
                                           const PredictOptions& options) {
  absl::StatusOr<Prediction> out;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  // No ownership: no task touches the model once `done` has run.
  std::shared_ptr<const Model> unowned(std::shared_ptr<const Model>(), &model);
  PredictAsync(std::move(unowned), inputs, options,
               [&](absl::StatusOr<Prediction> p) {
                 std::lock_guard<std::mutex> lock(mu);
                 out = std::move(p);
                 done = true;
                 cv.notify_one();
               });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return out;
}

namespace {

// One small tile without an interval step: cheaper on the calling thread than
// handed to a pool thread and back.
bool RunsInline(const Model& model, int64_t rows, const PredictOptions& opt) {
  if (!opt.interval_levels.empty() || rows < 1) return false;
  const int64_t passes =
      opt.mode == PredictMode::kMonteCarlo ? std::max(opt.samples, 1) : 1;
  const int first = opt.mode == PredictMode::kMonteCarlo
                        ? model.first_stochastic_layer()
                        : model.num_stages();
  const int64_t macs =
      rows * (model.MultiplyAdds() - model.MultiplyAdds(first)) +
      rows * passes * model.MultiplyAdds(first);
  return macs <= Engine::kInlineMultiplyAdds;
}

}  // namespace

Engine::Workspace& Engine::CurrentWorkspace() {
  const int index = pool_.CurrentThreadIndex();
  if (index >= 0) return *workspaces_[index];
  thread_local Workspace caller;
  return caller;
}

void Engine::PredictAsync(std::shared_ptr<const Model> model,
                          InputMatrix inputs, PredictOptions options,
                          Callback done) {
  auto request = std::make_shared<Request>();
  request->model = std::move(model);
  request->input_data = inputs.data();
  request->input_rows = inputs.rows();
  request->input_cols = inputs.cols();
  request->options = std::move(options);
  request->done = std::move(done);
  request->submitted = absl::Now();
  if (inline_small_requests_ &&
      RunsInline(*request->model, request->input_rows, request->options)) {
    Start(std::move(request));
    return;
  }
  pool_.Schedule([this, request]() mutable { Start(std::move(request)); });
}

namespace {

// DEADLINE_EXCEEDED or CANCELLED when the request should stop, else OK.
// The deadline is checked first: a call whose deadline has passed is also
// cancelled by gRPC, and the deadline is the reason to report.
absl::Status CheckStop(const PredictOptions& opt, absl::string_view stage) {
  if (absl::Now() > opt.deadline) {
    return absl::DeadlineExceededError(
        absl::StrCat("the deadline passed before the ", stage, " finished"));
  }
  if (opt.should_stop && opt.should_stop()) {
    return absl::CancelledError("the request was cancelled");
  }
  return absl::OkStatus();
}

// Forward pass of layers [from, to) on columns of `h` (in place, returns the
// result), deterministic (no masks). For the shared prefix and for the
// deterministic mode.
absl::StatusOr<Eigen::MatrixXf> ForwardDeterministic(
    const Model& model, Eigen::MatrixXf h, int from, int to,
    const PredictOptions& opt) {
  std::vector<float> scratch;
  for (int l = from; l < to; ++l) {
    absl::Status stop = CheckStop(opt, "layers before the first dropout");
    if (!stop.ok()) return stop;
    const Stage& stage = model.stages()[l];
    Eigen::MatrixXf z;
    if (stage.op == Stage::Op::kDense && !model.has_layer_list()) {
      // v1 models: Eigen's product, as their prefix has always been
      // computed (their answers stay bit-identical); v2 models use the
      // stage's kernel like every other stage.
      z = stage.weight * h;
      z.colwise() += stage.bias;
      nn::Activate(stage.activation, z, stage.negative_slope);
    } else {
      z.resize(stage.out.size(), h.cols());
      RunStage(stage, h.data(), h.cols(), z.data(), &scratch);
    }
    h = std::move(z);
  }
  return h;
}

// Standardised inputs as columns: [Q x B], images reordered from the
// request's CHW to the engine's HWC (core/layers.h).
Eigen::MatrixXf StandardisedColumns(const Model& model,
                                    const InputMatrix& inputs) {
  Eigen::MatrixXf x = inputs.transpose();
  const ModelSpec& spec = model.spec();
  const Shape shape = model.input_shape();
  if (spec.input_mean.size() == x.rows()) {
    x.colwise() -= spec.input_mean;
    x.array().colwise() /= spec.input_std.array();
  } else if (spec.input_mean.size() != 0) {  // per channel
    const int64_t area = static_cast<int64_t>(shape.h) * shape.w;
    for (int c = 0; c < shape.c; ++c) {
      x.middleRows(c * area, area).array() -= spec.input_mean[c];
      x.middleRows(c * area, area).array() /= spec.input_std[c];
    }
  }
  if (shape.flat()) return x;
  Eigen::MatrixXf hwc(x.rows(), x.cols());
  int64_t chw = 0;
  for (int c = 0; c < shape.c; ++c)
    for (int y = 0; y < shape.h; ++y)
      for (int w = 0; w < shape.w; ++w)
        hwc.row(HwcIndex(shape, c, y, w)) = x.row(chw++);
  return hwc;
}

}  // namespace

void Engine::Start(std::shared_ptr<Request> req) {
  const Model& model = *req->model;
  const PredictOptions& opt = req->options;
  req->started = absl::Now();
  req->result.queue_seconds =
      absl::ToDoubleSeconds(req->started - req->submitted);
  absl::Status valid = Validate(model, req->inputs(), opt);
  if (!valid.ok()) {
    req->done(std::move(valid));  // moved: see FinishIfStopped
    return;
  }
  req->B = static_cast<int>(req->inputs().rows());
  req->D = model.output_size();
  req->L = model.num_stages();
  const bool classification = model.task() == Task::kClassification;
  const bool mc = opt.mode == PredictMode::kMonteCarlo;
  req->T = mc ? opt.samples : 1;
  req->n0 = opt.resume ? opt.resume->passes : 0;
  req->first = mc ? model.first_stochastic_layer() : req->L;
  req->kept_T = opt.return_samples || !opt.interval_levels.empty()
                    ? req->T
                    : std::min(req->T, std::max(0, opt.keep_first_samples));
  req->keep_samples = req->kept_T > 0;

  Prediction& res = req->result;
  res.task = model.task();
  res.rows = req->B;
  res.outputs = req->D;
  res.samples = static_cast<int>(req->n0 + req->T);
  res.levels = static_cast<int>(opt.interval_levels.size());
  const int B = req->B, D = req->D, T = req->T;

  Eigen::MatrixXf x = StandardisedColumns(model, req->inputs());
  absl::StatusOr<Eigen::MatrixXf> prefix =
      ForwardDeterministic(model, std::move(x), 0, req->first, opt);
  if (!prefix.ok()) {
    req->done(std::move(prefix).status());
    return;
  }
  req->prefix = *std::move(prefix);

  if (req->first == req->L) {
    // No stochastic layer runs: every pass gives the same output.
    const Eigen::MatrixXf& y = req->prefix;  // [D x B]
    res.mean.assign(static_cast<size_t>(B) * D, 0.0);
    if (req->keep_samples)
      res.sample_values.resize(static_cast<size_t>(req->kept_T) * B * D);
    if (classification) {
      res.predicted_class.resize(B);
      res.entropy.resize(B);
      res.mutual_information.assign(B, 0.0);
      res.variation_ratio.assign(B, 0.0);
      std::vector<double> p(D);
      for (int r = 0; r < B; ++r) {
        res.entropy[r] =
            Softmax(y.col(r).data(), D, p.data(), &res.predicted_class[r]);
        for (int d = 0; d < D; ++d) res.mean[r * D + d] = p[d];
      }
    } else {
      const ModelSpec& spec = model.spec();
      res.variance.resize(static_cast<size_t>(B) * D);
      res.model_variance.assign(static_cast<size_t>(B) * D, 0.0);
      const double noise = opt.include_noise ? 1.0 / model.tau() : 0.0;
      for (int r = 0; r < B; ++r) {
        for (int d = 0; d < D; ++d) {
          float v = y(d, r);
          if (spec.output_mean.size())
            v = v * spec.output_std[d] + spec.output_mean[d];
          res.mean[r * D + d] = v;
          res.variance[r * D + d] = noise;
        }
      }
    }
    if (req->keep_samples) {
      for (int t = 0; t < req->kept_T; ++t) {
        for (int i = 0; i < B * D; ++i) {
          res.sample_values[static_cast<size_t>(t) * B * D + i] =
              static_cast<float>(res.mean[i]);
        }
      }
    }
    ConstantPassFigures(*req, mc);
    res.tiles = 0;
    PassesFinished(req);
    return;
  }

  // Plan the tiles.
  const std::vector<int> widths = model.widths();
  req->max_width = *std::max_element(widths.begin() + req->first, widths.end());
  const int64_t total = static_cast<int64_t>(B) * T;
  // Columns per tile: enough to keep a layer's activations in L2, and, when
  // that leaves fewer than two tiles per thread, fewer columns so every
  // thread gets work -- but never tiles so small (under ~256k multiply-adds)
  // that scheduling them costs more than it saves.
  int64_t target = std::clamp<int64_t>(262144 / req->max_width, 64, 4096);
  const int threads = pool_.size();
  const int64_t macs_per_column =
      std::max<int64_t>(1, model.MultiplyAdds(req->first));
  const int64_t min_cols = RoundUp(
      std::max<int64_t>(kColumnAlign, 262144 / macs_per_column), kColumnAlign);
  if ((total + target - 1) / target < 2 * threads) {
    const int64_t even =
        RoundUp((total + 2 * threads - 1) / (2 * threads), kColumnAlign);
    target = std::min(target, std::max(min_cols, even));
  }
  int S = opt.samples_per_tile, R = opt.rows_per_tile;
  if (S == 0 && R == 0) {
    if (T >= target) {
      R = 1;
      S = static_cast<int>(target);
    } else {
      S = T;
      R = static_cast<int>(std::max<int64_t>(1, target / T));
    }
  } else if (S == 0) {
    S = static_cast<int>(std::max<int64_t>(1, target / R));
  } else if (R == 0) {
    R = static_cast<int>(std::max<int64_t>(1, target / S));
  }
  S = std::min(S, T);
  R = std::min(R, B);
  req->samples_per_tile = S;
  req->rows_per_tile = R;
  req->chunks = (T + S - 1) / S;
  const int groups = (B + R - 1) / R;
  req->num_tiles = groups * req->chunks;
  req->max_cols = RoundUp(static_cast<int64_t>(R) * S, kColumnAlign);
  for (const Stage& stage : model.stages()) {
    req->masks.emplace_back(opt.seed, stage.mask_layer, stage.drop_rate);
    req->max_channels = std::max(req->max_channels, stage.in.c);
  }

  StartStatistics(*req, classification);
  if (req->keep_samples)
    res.sample_values.resize(static_cast<size_t>(req->kept_T) * B * D);

  const int tasks = std::min(threads, req->num_tiles);
  req->window = 2 * tasks + 2;
  {
    std::lock_guard<std::mutex> lock(req->mu);
    req->slots.resize(req->window);
  }
  for (int i = 1; i < tasks; ++i) {
    pool_.Schedule([this, req] { Work(req); });
  }
  Work(req);
}

namespace {

// With req.mu held: records `stop` (the first stop wins) and wakes the
// threads waiting for a slot.
void RecordStop(Engine::Request& req, const absl::Status& stop)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(req.mu) {
  if (req.stop_status.ok()) {
    req.stop_status = stop;
    req.slot_freed.notify_all();
  }
}

// With req.mu held: when the request has stopped and no task holds a unit
// of its work, finalises it and returns the call that delivers the status
// (to be made after unlocking); otherwise an empty function.
std::function<void()> FinishIfStopped(Engine::Request& req)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(req.mu) {
  if (req.stop_status.ok() || req.finalized || req.in_progress > 0) return {};
  req.finalized = true;
  // A status of its own for the caller rather than a copy sharing
  // stop_status's reference-counted message: the request (and its status)
  // may be destroyed on another thread, and Debian's abseil is not built for
  // ThreadSanitizer, which could not see that the count orders the two.
  absl::Status status(req.stop_status.code(),
                      std::string(req.stop_status.message()));
  return [done = std::move(req.done), status = std::move(status)]() mutable {
    done(std::move(status));  // moved, so no copy is left to release here
  };
}

// With req.mu held: finalises a successful request and returns the call that
// delivers its result.
std::function<void()> FinishWithResult(Engine::Request& req)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(req.mu) {
  assert(!req.finalized && req.stop_status.ok() && req.in_progress == 0);
  req.finalized = true;
  Prediction& res = req.result;
  res.run_seconds = absl::ToDoubleSeconds(absl::Now() - req.started);
  if (!req.options.return_samples && req.options.keep_first_samples <= 0) {
    std::vector<float>().swap(res.sample_values);  // kept for intervals only
  } else if (!req.options.return_samples) {
    // Feedback: the first passes only.
    res.sample_values.resize(static_cast<size_t>(req.kept_T) * res.rows *
                             res.outputs);
  } else if (req.options.predictive_draws) {
    AddPredictiveNoise(req.options.seed, 1.0 / std::sqrt(req.model->tau()),
                       req.T, res.rows, res.outputs, res.sample_values.data(),
                       req.options.first_sample, req.options.row_ids);
  }
  return [done = std::move(req.done), result = std::move(res)]() mutable {
    done(std::move(result));
  };
}

// Folds one finished tile into the running statistics, in sample order.
void MergeTile(Engine::Request& req, int tile, const TileOutput& out);

// Builds the final prediction from the running statistics.
void Finish(Engine::Request& req);

// Computes tile `tile` of the passes into `slot`.
void ComputeTile(Engine::Request& req, int tile, Engine::Workspace& ws,
                 TileOutput* slot);

}  // namespace

void Engine::Work(const std::shared_ptr<Request>& req_ptr) {
  Request& req = *req_ptr;
  Workspace& ws = CurrentWorkspace();
  while (true) {
    int tile = -1;
    TileOutput* slot = nullptr;
    std::function<void()> finish;
    {
      std::unique_lock<std::mutex> lock(req.mu);
      if (!req.finalized && req.stop_status.ok() &&
          req.next_tile < req.num_tiles) {
        tile = req.next_tile++;
        ++req.in_progress;  // from here the request cannot be finalised
        req.slot_freed.wait(lock, [&req, tile]() {
          return tile < req.next_merge + req.window || !req.stop_status.ok();
        });
        if (!req.stop_status.ok()) {  // stopped while waiting: abandon it
          --req.in_progress;
          tile = -1;
        } else {
          slot = &req.slots[tile % req.window];
        }
      }
      if (tile < 0) finish = FinishIfStopped(req);
    }
    if (tile < 0) {
      if (finish) finish();
      return;
    }

    // Holding a tile: the model and the options may be used.
    if (absl::Status stop = CheckStop(req.options, "passes"); !stop.ok()) {
      {
        std::lock_guard<std::mutex> lock(req.mu);
        RecordStop(req, stop);
        --req.in_progress;
        finish = FinishIfStopped(req);
      }
      if (finish) finish();
      return;
    }
    ComputeTile(req, tile, ws, slot);

    // Merge every tile that is ready, in order.
    bool passes_done = false;
    {
      std::lock_guard<std::mutex> lock(req.mu);
      slot->ready = true;
      --req.in_progress;
      while (req.next_merge < req.num_tiles &&
             req.slots[req.next_merge % req.window].ready) {
        TileOutput& ready = req.slots[req.next_merge % req.window];
        if (req.stop_status.ok()) MergeTile(req, req.next_merge, ready);
        ready.ready = false;
        ++req.next_merge;
        req.slot_freed.notify_all();
      }
      if (req.next_merge == req.num_tiles && req.stop_status.ok() &&
          !req.finalized) {
        // Every tile is merged, so no other task holds one, and none can
        // take one: this thread alone moves the request on.
        Finish(req);
        passes_done = true;
      } else {
        finish = FinishIfStopped(req);
      }
    }
    if (passes_done) {
      PassesFinished(req_ptr);
      return;
    }
    if (finish) {
      finish();
      return;
    }
  }
}

void Engine::PassesFinished(const std::shared_ptr<Request>& req_ptr) {
  Request& req = *req_ptr;
  std::function<void()> finish;
  int helpers = 0;
  {
    std::lock_guard<std::mutex> lock(req.mu);
    if (req.options.interval_levels.empty()) {
      finish = FinishWithResult(req);
    } else {
      req.result.intervals.resize(static_cast<size_t>(req.B) * req.D *
                                  req.options.interval_levels.size());
      helpers = std::min(pool_.size(), req.B * req.D) - 1;
    }
  }
  if (finish) {
    finish();
    return;
  }
  for (int i = 0; i < helpers; ++i) {
    pool_.Schedule([this, req_ptr] { IntervalWork(req_ptr); });
  }
  IntervalWork(req_ptr);
}

void Engine::IntervalWork(const std::shared_ptr<Request>& req_ptr) {
  Request& req = *req_ptr;
  Workspace& ws = CurrentWorkspace();
  const int items = req.B * req.D;
  while (true) {
    int item = -1;
    std::function<void()> finish;
    {
      std::lock_guard<std::mutex> lock(req.mu);
      if (!req.finalized && req.stop_status.ok() && req.next_item < items) {
        item = req.next_item++;
        ++req.in_progress;
      } else {
        finish = FinishIfStopped(req);
      }
    }
    if (item < 0) {
      if (finish) finish();
      return;
    }

    // Holding an item: the model and the options may be used.
    const PredictOptions& opt = req.options;
    absl::Status stop = CheckStop(opt, "predictive intervals");
    if (stop.ok()) {
      const double noise = opt.include_noise ? 1.0 / req.model->tau() : 0.0;
      const std::vector<double>& levels = opt.interval_levels;
      Prediction& res = req.result;
      // Outputs are disjoint: no lock needed for the samples or the bounds.
      PredictiveIntervals(res.sample_values.data() + item,
                          static_cast<int64_t>(req.B) * req.D, req.T, noise,
                          levels, &res.intervals[item * levels.size()],
                          &ws.intervals);
    }
    {
      std::lock_guard<std::mutex> lock(req.mu);
      if (!stop.ok()) RecordStop(req, stop);
      --req.in_progress;
      if (stop.ok() && ++req.items_done == items && req.stop_status.ok()) {
        finish = FinishWithResult(req);
      } else {
        finish = FinishIfStopped(req);
      }
    }
    if (finish) {
      finish();
      return;
    }
  }
}

namespace {

void ComputeTile(Engine::Request& req, int tile, Engine::Workspace& ws,
                 TileOutput* slot) {
  const Model& model = *req.model;
  const PredictOptions& opt = req.options;
  const int D = req.D;
  const bool classification = model.task() == Task::kClassification;
  const ModelSpec& spec = model.spec();
  Grow(ws.a, static_cast<size_t>(req.max_width) * req.max_cols);
  Grow(ws.b, static_cast<size_t>(req.max_width) * req.max_cols);
  Grow(ws.bits, DropoutMask::ScratchSize(req.max_width, req.max_cols));
  Grow(ws.columns, static_cast<size_t>(req.max_cols));
  Grow(ws.channel, static_cast<size_t>(req.max_channels) * req.max_cols);
  std::chrono::steady_clock::time_point tile_start;
  if (opt.collect_timing) tile_start = std::chrono::steady_clock::now();
  const int S = req.samples_per_tile, R = req.rows_per_tile;
  const int g = tile / req.chunks, k = tile % req.chunks;
  const int r0 = g * R, r1 = std::min(req.B, r0 + R);
  const int s0 = k * S, s1 = std::min(req.T, s0 + S);
  const int ns = s1 - s0;
  const int cols = (r1 - r0) * ns;
  const int64_t cols_pad = RoundUp(cols, kColumnAlign);
  const std::vector<uint32_t>& ids = req.options.row_ids;
  for (int c = 0; c < cols; ++c) {
    const int r = r0 + c / ns;
    ws.columns[c] = {
        ids.empty() ? static_cast<uint32_t>(r) : ids[r],
        req.options.first_sample + static_cast<uint32_t>(s0 + c % ns)};
  }

  const int n0 = static_cast<int>(req.prefix.rows());
  float* in = ws.a.data();
  float* out_buf = ws.b.data();
  {
    MatrixMap x(in, n0, cols_pad);
    for (int c = 0; c < cols; ++c) x.col(c) = req.prefix.col(r0 + c / ns);
    x.rightCols(cols_pad - cols).setZero();
  }
  int64_t mask_ns = 0;
  for (int l = req.first; l < req.L; ++l) {
    const Stage& stage = model.stages()[l];
    if (stage.drop_rate > 0.0f) {
      std::chrono::steady_clock::time_point t0;
      if (opt.collect_timing) t0 = std::chrono::steady_clock::now();
      ApplyStageMask(stage, req.masks[l], in, ws.columns.data(), cols,
                     ws.bits.data(), ws.channel.data());
      if (opt.collect_timing) {
        mask_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now() - t0)
                       .count();
      }
    }
    RunStage(stage, in, cols_pad, out_buf, &ws.patches);
    std::swap(in, out_buf);
  }
  if (mask_ns) req.mask_ns.fetch_add(mask_ns, std::memory_order_relaxed);
  const float* y = in;  // [D x cols_pad]

  // Per-sample outputs into the tile's slot (slots are indexed by tile
  // modulo the window; Work waited until this one was free).
  if (classification) {
    Grow(slot->probs, static_cast<size_t>(cols) * D);
    Grow(slot->entropy, cols);
    Grow(slot->argmax, cols);
    for (int c = 0; c < cols; ++c) {
      slot->entropy[c] = Softmax(
          y + static_cast<int64_t>(c) * D, D,
          slot->probs.data() + static_cast<int64_t>(c) * D, &slot->argmax[c]);
    }
  } else {
    Grow(slot->values, static_cast<size_t>(cols) * D);
    for (int c = 0; c < cols; ++c) {
      for (int d = 0; d < D; ++d) {
        float v = y[static_cast<int64_t>(c) * D + d];
        if (spec.output_mean.size())
          v = v * spec.output_std[d] + spec.output_mean[d];
        slot->values[static_cast<int64_t>(c) * D + d] = v;
      }
    }
  }
  if (req.keep_samples) {
    float* samples = req.result.sample_values.data();
    for (int c = 0; c < cols; ++c) {
      const int64_t t = s0 + c % ns, r = r0 + c / ns;
      if (t >= req.kept_T) continue;
      float* dst = samples + (t * req.B + r) * D;
      for (int d = 0; d < D; ++d) {
        dst[d] = classification
                     ? static_cast<float>(
                           slot->probs[static_cast<int64_t>(c) * D + d])
                     : slot->values[static_cast<int64_t>(c) * D + d];
      }
    }
  }

  if (opt.collect_timing) {
    req.compute_ns.fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now() - tile_start)
            .count(),
        std::memory_order_relaxed);
  }
}

// The leaf of pass g in the statistics of `req`: its first pass.
int64_t LeafStart(const Engine::Request& req, int64_t g) {
  return std::max(g / kLeafPasses * kLeafPasses, req.stats_first);
}

// Row r's leaf ends with pass g: it becomes a block of the row's.
void CloseLeaf(Engine::Request& req, int r, int64_t g) {
  const int D = req.D;
  PassBlock leaf;
  leaf.index = g / kLeafPasses;
  leaf.passes = g - LeafStart(req, g) + 1;
  // Moves the row's n values of `from` to `to`, leaving zeros.
  auto take = [r](std::vector<double>& from, int n, std::vector<double>* to) {
    const auto first = from.begin() + static_cast<size_t>(r) * n;
    to->assign(first, first + n);
    std::fill_n(first, n, 0.0);
  };
  if (req.model->task() == Task::kClassification) {
    take(req.sum_p, D, &leaf.sum_p);
    take(req.sum_p2, D, &leaf.sum_p2);
    take(req.sum_entropy, 1, &leaf.sum_entropy);
  } else {
    take(req.run_mean, D, &leaf.mean);
    take(req.run_m2, D, &leaf.m2);
  }
  PushBlock(std::move(leaf), &req.row_blocks[r]);
}

void MergeTile(Engine::Request& req, int tile, const TileOutput& out) {
  const int S = req.samples_per_tile, R = req.rows_per_tile, D = req.D;
  const int g = tile / req.chunks, k = tile % req.chunks;
  const int r0 = g * R, r1 = std::min(req.B, r0 + R);
  const int s0 = k * S, s1 = std::min(req.T, s0 + S);
  const int ns = s1 - s0;
  const bool classification = req.model->task() == Task::kClassification;
  const int64_t pass0 = int64_t{req.options.first_sample} + s0;
  for (int r = r0; r < r1; ++r) {
    const int64_t c0 = static_cast<int64_t>(r - r0) * ns;
    for (int s = 0; s < ns; ++s) {
      const int64_t c = c0 + s, pass = pass0 + s;
      if (classification) {
        double* sp = &req.sum_p[static_cast<int64_t>(r) * D];
        double* sp2 = &req.sum_p2[static_cast<int64_t>(r) * D];
        const double* p = &out.probs[c * D];
        for (int d = 0; d < D; ++d) {
          sp[d] += p[d];
          sp2[d] += p[d] * p[d];
        }
        req.sum_entropy[r] += out.entropy[c];
        ++req.class_counts[static_cast<int64_t>(r) * D + out.argmax[c]];
      } else {
        double* mean = &req.run_mean[static_cast<int64_t>(r) * D];
        double* m2 = &req.run_m2[static_cast<int64_t>(r) * D];
        const double n = static_cast<double>(pass - LeafStart(req, pass) + 1);
        const float* v = &out.values[c * D];
        for (int d = 0; d < D; ++d) {
          // Welford's update, in pass order within the leaf.
          const double delta = v[d] - mean[d];
          mean[d] += delta / n;
          m2[d] += delta * (v[d] - mean[d]);
        }
      }
      if ((pass + 1) % kLeafPasses == 0) CloseLeaf(req, r, pass);
    }
  }
}

// The statistics of every row (their blocks alike), with each row's leaf
// still filling as the last block.
std::shared_ptr<RunningStats> GatherStatistics(Engine::Request& req) {
  auto stats = std::make_shared<RunningStats>();
  stats->first_pass = req.stats_first;
  stats->passes = req.options.first_sample + int64_t{req.T} - req.stats_first;
  stats->rows = req.B;
  stats->outputs = req.D;
  stats->votes = std::move(req.class_counts);
  const int64_t last = stats->first_pass + stats->passes - 1;
  const bool filling = (last + 1) % kLeafPasses != 0;
  const size_t blocks = req.row_blocks[0].size() + (filling ? 1 : 0);
  auto append = [](const std::vector<double>& from, std::vector<double>* to) {
    to->insert(to->end(), from.begin(), from.end());
  };
  for (size_t i = 0; i < blocks; ++i) {
    PassBlock all;
    if (i < req.row_blocks[0].size()) {
      const PassBlock& shape = req.row_blocks[0][i];
      all.level = shape.level;
      all.index = shape.index;
      all.passes = shape.passes;
      for (int r = 0; r < req.B; ++r) {
        const PassBlock& b = req.row_blocks[r][i];
        append(b.mean, &all.mean);
        append(b.m2, &all.m2);
        append(b.sum_p, &all.sum_p);
        append(b.sum_p2, &all.sum_p2);
        append(b.sum_entropy, &all.sum_entropy);
      }
    } else {
      all.index = last / kLeafPasses;
      all.passes = last - LeafStart(req, last) + 1;
      all.mean = std::move(req.run_mean);
      all.m2 = std::move(req.run_m2);
      all.sum_p = std::move(req.sum_p);
      all.sum_p2 = std::move(req.sum_p2);
      all.sum_entropy = std::move(req.sum_entropy);
    }
    stats->blocks.push_back(std::move(all));
  }
  return stats;
}

// Fills the prediction's figures from the statistics of all its passes.
void SetFigures(const RunningStats& stats, Engine::Request& req) {
  Prediction& res = req.result;
  const double noise =
      req.model->task() == Task::kRegression && req.options.include_noise
          ? 1.0 / req.model->tau()
          : 0.0;
  PassFigures f = Figures(stats, req.model->task(), noise);
  res.mean = std::move(f.mean);
  res.variance = std::move(f.variance);
  res.model_variance = std::move(f.model_variance);
  res.predicted_class = std::move(f.predicted_class);
  res.entropy = std::move(f.entropy);
  res.mutual_information = std::move(f.mutual_information);
  res.expected_entropy = std::move(f.expected_entropy);
  res.variation_ratio = std::move(f.variation_ratio);
  res.votes = std::move(f.votes);
}

void Finish(Engine::Request& req) {
  Prediction& res = req.result;
  res.tiles = req.num_tiles;
  res.run_seconds = absl::ToDoubleSeconds(absl::Now() - req.started);
  res.mask_seconds = req.mask_ns.load() * 1e-9;
  res.compute_seconds = req.compute_ns.load() * 1e-9;
  std::shared_ptr<RunningStats> stats = GatherStatistics(req);
  SetFigures(*stats, req);
  if (req.options.keep_stats) res.stats = std::move(stats);
}

void StartStatistics(Engine::Request& req, bool classification) {
  const int B = req.B, D = req.D;
  const size_t cells = static_cast<size_t>(B) * D;
  req.row_blocks.assign(B, {});
  if (classification) {
    req.sum_p.assign(cells, 0.0);
    req.sum_p2.assign(cells, 0.0);
    req.sum_entropy.assign(B, 0.0);
    req.class_counts.assign(cells, 0);
  } else {
    req.run_mean.assign(cells, 0.0);
    req.run_m2.assign(cells, 0.0);
  }
  const RunningStats* r = req.options.resume.get();
  req.stats_first = r ? r->first_pass : req.options.first_sample;
  if (r == nullptr) return;
  if (classification) req.class_counts = r->votes;
  const bool filling = (r->first_pass + r->passes) % kLeafPasses != 0;
  const size_t done = r->blocks.size() - (filling ? 1 : 0);
  auto slice = [](const std::vector<double>& all, int row, int n) {
    auto first = all.begin() + static_cast<size_t>(row) * n;
    return all.empty() ? std::vector<double>()
                       : std::vector<double>(first, first + n);
  };
  for (int row = 0; row < B; ++row) {
    for (size_t i = 0; i < done; ++i) {
      const PassBlock& all = r->blocks[i];
      PassBlock b;
      b.level = all.level;
      b.index = all.index;
      b.passes = all.passes;
      b.mean = slice(all.mean, row, D);
      b.m2 = slice(all.m2, row, D);
      b.sum_p = slice(all.sum_p, row, D);
      b.sum_p2 = slice(all.sum_p2, row, D);
      b.sum_entropy = slice(all.sum_entropy, row, 1);
      req.row_blocks[row].push_back(std::move(b));
    }
  }
  if (!filling) return;
  const PassBlock& leaf = r->blocks.back();
  if (classification) {
    req.sum_p = leaf.sum_p;
    req.sum_p2 = leaf.sum_p2;
    req.sum_entropy = leaf.sum_entropy;
  } else {
    req.run_mean = leaf.mean;
    req.run_m2 = leaf.m2;
  }
}

}  // namespace
namespace {

void ConstantPassFigures(Engine::Request& req, bool mc) {
  Prediction& res = req.result;
  const int B = req.B, D = req.D;
  const int64_t N = req.n0 + req.T;
  const bool classification = res.task == Task::kClassification;
  if (classification) {
    res.model_variance.assign(static_cast<size_t>(B) * D, 0.0);
    res.expected_entropy = res.entropy;
    res.votes.assign(static_cast<size_t>(B) * D, 0);
    for (int r = 0; r < B; ++r) {
      res.votes[static_cast<size_t>(r) * D + res.predicted_class[r]] =
          static_cast<int>(N);
    }
  }
  if (!mc || !req.options.keep_stats) return;
  // Every pass gives the same output: each block holds its passes of it.
  // The figures above stay exact (no spread, no mutual information); the
  // server does not split such a model's passes into ranges
  // (server/request.cc), whose merge would round them.
  auto stats = std::make_shared<RunningStats>();
  stats->first_pass = req.options.resume ? req.options.resume->first_pass
                                         : req.options.first_sample;
  stats->passes = N;
  stats->rows = B;
  stats->outputs = D;
  stats->blocks = CanonicalBlocks(stats->first_pass, N);
  for (PassBlock& b : stats->blocks) {
    const double n = static_cast<double>(b.passes);
    if (classification) {
      for (double p : res.mean) {
        b.sum_p.push_back(p * n);
        b.sum_p2.push_back(p * p * n);
      }
      for (double h : res.entropy) b.sum_entropy.push_back(h * n);
    } else {
      b.mean = res.mean;
      b.m2.assign(res.mean.size(), 0.0);
    }
  }
  if (classification) {
    stats->votes.assign(res.votes.begin(), res.votes.end());
  }
  res.stats = std::move(stats);
}

}  // namespace

}  // namespace mcdrop
