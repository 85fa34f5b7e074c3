// Copyright 2026 The mcdrop Authors.

#include "server/request.h"

#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mcdrop::server {
namespace {

using mcdrop::v1::PredictRequest;
using mcdrop::v1::PredictResponse;

uint64_t FreshSeed() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t s;
  do {
    s = rng();
  } while (s == 0);
  return s;
}

// The request's target, or the model's or server's default when it gives
// neither T nor a target (MC mode, no intervals); nullopt: a fixed T.
absl::StatusOr<absl::optional<AdaptiveOptions>> ResolveTarget(
    const PredictRequest& req, const Model& model, const Limits& limits) {
  const mcdrop::v1::SampleTarget& tg = req.target();
  const bool asked = req.has_target();
  const bool mc = req.mode() == mcdrop::v1::MONTE_CARLO;
  AdaptiveOptions a;
  if (asked) {
    a.target_abs = tg.standard_error();
    a.target_rel = tg.relative_error();
    if (!(a.target_abs >= 0) || !(a.target_rel >= 0) ||
        !std::isfinite(a.target_abs) || !std::isfinite(a.target_rel) ||
        (a.target_abs == 0 && a.target_rel == 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target: standard_error and relative_error must be finite and >= 0, "
          "and one of them > 0; got ",
          a.target_abs, " and ", a.target_rel));
    }
    if (!mc) {
      return absl::InvalidArgumentError(
          "a target needs MONTE_CARLO mode (DETERMINISTIC is one pass)");
    }
    if (req.interval_levels_size() > 0) {
      return absl::InvalidArgumentError(
          "intervals are not computed with a target: give samples instead");
    }
  } else if (mc && req.samples() == 0 && req.interval_levels_size() == 0) {
    const ModelSpec& spec = model.spec();
    if (spec.target_standard_error > 0 || spec.target_relative_error > 0) {
      a.target_abs = spec.target_standard_error;
      a.target_rel = spec.target_relative_error;
    } else if (limits.default_standard_error > 0 ||
               limits.default_relative_error > 0) {
      a.target_abs = limits.default_standard_error;
      a.target_rel = limits.default_relative_error;
    } else {
      return absl::optional<AdaptiveOptions>();
    }
  } else {
    return absl::optional<AdaptiveOptions>();
  }
  if (tg.min_samples() < 0 || tg.max_samples() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target: min_samples and max_samples must be >= 0 (0: the default), "
        "got ",
        tg.min_samples(), " and ", tg.max_samples()));
  }
  a.max_samples = tg.max_samples() > 0 ? tg.max_samples()
                  : req.samples() > 0  ? req.samples()
                                       : std::min(10000, limits.max_samples);
  if (a.max_samples > limits.max_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("target: max_samples ", a.max_samples,
                     " exceeds the server's limit of ", limits.max_samples));
  }
  a.min_samples =
      tg.min_samples() > 0 ? tg.min_samples() : std::min(100, a.max_samples);
  if (a.min_samples < 2 || a.min_samples > a.max_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("target: need 2 <= min_samples <= max_samples, got ",
                     a.min_samples, " and ", a.max_samples));
  }
  return absl::optional<AdaptiveOptions>(a);
}

// set_levels: a calibrated classifier, MC mode, a fixed T (`t`) at least the
// calibration's, at most 16 levels in (0, 1).
absl::Status CheckSetLevels(const PredictRequest& req, const Model& model,
                            bool mc, int t, bool adaptive) {
  if (req.set_levels_size() == 0) return absl::OkStatus();
  if (model.task() != Task::kClassification) {
    return absl::InvalidArgumentError(
        "set_levels apply to classification models only (regression: "
        "interval_levels)");
  }
  if (!model.spec().calibration) {
    return absl::InvalidArgumentError(
        "set_levels need a calibrated model, and this one carries no "
        "calibration (mcdrop-model calibrate makes one)");
  }
  if (!mc) {
    return absl::InvalidArgumentError(
        "set_levels need MONTE_CARLO mode: the calibration was made with "
        "dropout on");
  }
  const int calibrated_t = model.spec().calibration->samples;
  if (adaptive) {
    return absl::InvalidArgumentError(absl::StrCat(
        "set_levels need a fixed T (the calibration was made at T = ",
        calibrated_t, "); give samples instead of a target"));
  }
  if (t < calibrated_t) {
    return absl::InvalidArgumentError(
        absl::StrCat("set_levels need T >= ", calibrated_t,
                     ", the T the calibration was made at; got T = ", t));
  }
  if (req.set_levels_size() > 16)
    return absl::InvalidArgumentError("at most 16 set levels per request");
  for (double level : req.set_levels()) {
    if (!(level > 0 && level < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("set level ", level, " is not in (0, 1)"));
    }
  }
  return absl::OkStatus();
}

// A sample_range: checks it against the request and sets the plan's passes
// to the range's.
absl::Status CheckSampleRange(const PredictRequest& req, const Model& model,
                              const Limits& limits, PredictPlan* plan) {
  if (model.first_stochastic_layer() == model.num_stages()) {
    return absl::InvalidArgumentError(
        "this model has no dropout: every pass gives the same output, so "
        "there are no passes to spread over servers (send the request "
        "without sample_range)");
  }
  const int64_t T = req.samples(), a = req.sample_range().begin(),
                b = req.sample_range().end();
  if (req.mode() != mcdrop::v1::MONTE_CARLO || T < 1 || req.seed() == 0) {
    return absl::InvalidArgumentError(
        "a sample_range is a part of a MONTE_CARLO request of a stated T "
        "(samples > 0) and seed (non-zero): every part must run the same "
        "request");
  }
  if (req.has_target() || req.interval_levels_size() > 0 ||
      req.set_levels_size() > 0) {
    return absl::InvalidArgumentError(
        "a sample_range is not run with a target, interval_levels or "
        "set_levels: they need every pass in one place");
  }
  if (!(0 <= a && a < b && b <= T)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample_range [", a, ", ", b,
        ") is not a non-empty range of the request's ", T, " passes"));
  }
  if (a % kLeafPasses != 0 || (b % kLeafPasses != 0 && b != T)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample_range [", a, ", ", b, "): begin and end must be multiples of ",
        kLeafPasses, " (end may be samples, ", T,
        "), so that the ranges merge exactly"));
  }
  if (b - a > limits.max_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample_range [", a, ", ", b, ") has ", b - a,
                     " passes, over the server's limit of ", limits.max_samples,
                     " per request; split it into more ranges"));
  }
  plan->range = true;
  plan->options.first_sample = static_cast<uint32_t>(a);
  plan->options.samples = static_cast<int>(b - a);
  plan->options.keep_stats = true;
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePredictRequest(const PredictRequest& req,
                                    const Model& model, const Limits& limits,
                                    PredictPlan* plan) {
  int* rows = &plan->rows;
  PredictOptions* opt = &plan->options;
  const int q = model.input_size();
  const Shape image = model.input_shape();
  // The shape of one example as the request states it, after the rows.
  auto matches_image = [&](int from) {
    return !image.flat() && req.shape(from) == image.c &&
           req.shape(from + 1) == image.h && req.shape(from + 2) == image.w;
  };
  // What the model accepts, for error messages only.
  auto accepted = [&] {
    return image.flat()
               ? absl::StrCat("[rows, ", q, "] (or [", q, "] for one row)")
               : absl::StrCat("[rows, ", image.c, ", ", image.h, ", ", image.w,
                              "], [", image.c, ", ", image.h, ", ", image.w,
                              "] for one image, or flat [rows, ", q, "]");
  };
  int64_t b;
  if (!image.flat()) {
    if (req.shape_size() == 2 && req.shape(1) == q) {
      b = req.shape(0);
    } else if (req.shape_size() == 3 && matches_image(0)) {
      b = 1;
    } else if (req.shape_size() == 4 && matches_image(1)) {
      b = req.shape(0);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape [", absl::StrJoin(req.shape(), ", "),
          "] does not match the model's input: expected ", accepted()));
    }
  } else if (req.shape_size() == 1) {
    b = 1;
    if (req.shape(0) != q) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape [", req.shape(0), "] does not match the model's ",
                       q, " inputs"));
    }
  } else if (req.shape_size() == 2) {
    b = req.shape(0);
    if (req.shape(1) != q) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape [", req.shape(0), ", ", req.shape(1), "]: the model takes ", q,
          " values per row, not ", req.shape(1)));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("shape must be ", accepted(),
                                                   "; got ", req.shape_size(),
                                                   " dimensions"));
  }
  if (b < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch is empty: shape [", b, ", ", q, "] has no rows"));
  }
  if (b > limits.max_batch_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(b, " rows exceed the server's limit of ",
                     limits.max_batch_rows, " rows per request"));
  }
  if (req.inputs_size() != b * q) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape [", b, ", ", q, "] needs ", b * q,
                     " input values, got ", req.inputs_size()));
  }
  const bool mc = req.mode() == mcdrop::v1::MONTE_CARLO;
  if (req.mode() != mcdrop::v1::MONTE_CARLO &&
      req.mode() != mcdrop::v1::DETERMINISTIC) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown mode ", req.mode()));
  }
  int t = req.samples();
  if (t < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("samples must be >= 0 (0: the model's default), got ", t));
  }
  if (t == 0)
    t = model.spec().default_samples > 0 ? model.spec().default_samples
                                         : limits.default_samples;
  if (mc && t > limits.max_samples && !req.has_sample_range()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "samples ", t, " exceed the server's limit of ", limits.max_samples));
  }
  if (req.interval_levels_size() > 0) {
    if (model.task() != Task::kRegression) {
      return absl::InvalidArgumentError(
          "interval_levels apply to regression models only");
    }
    if (req.interval_levels_size() > 16) {
      return absl::InvalidArgumentError(
          "at most 16 interval levels per request");
    }
    for (double level : req.interval_levels()) {
      if (!(level > 0 && level < 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("interval level ", level, " is not in (0, 1)"));
      }
    }
    const int64_t work =
        (mc ? t : 1) * b * model.output_size() * req.interval_levels_size();
    if (work > limits.max_interval_work) {
      return absl::InvalidArgumentError(absl::StrCat(
          "T x rows x outputs x interval levels = ", work,
          " exceeds the server's limit of ", limits.max_interval_work,
          " for one request; send fewer rows, levels or a smaller T"));
    }
  }
  auto adaptive = ResolveTarget(req, model, limits);
  if (!adaptive.ok()) return adaptive.status();
  if (absl::Status sets =
          CheckSetLevels(req, model, mc, t, adaptive->has_value());
      !sets.ok()) {
    return sets;
  }
  if (adaptive->has_value()) t = (*adaptive)->max_samples;
  if (req.has_sample_range()) {
    if (absl::Status s = CheckSampleRange(req, model, limits, plan); !s.ok()) {
      return s;
    }
    t = plan->options.samples;
  }
  const int64_t keep = mc ? t : 1;
  if ((req.return_samples() || req.interval_levels_size() > 0) &&
      keep * b * model.output_size() * 4 > limits.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "T x rows x outputs = ", keep * b * model.output_size(),
        " samples exceed what the server keeps for one request "
        "(max_message_bytes ",
        limits.max_message_bytes, "); send fewer rows or a smaller T"));
  }
  *rows = static_cast<int>(b);
  opt->mode = mc ? PredictMode::kMonteCarlo : PredictMode::kDeterministic;
  opt->samples = mc ? t : 1;  // T means nothing without dropout
  opt->seed = req.seed() != 0 ? req.seed() : FreshSeed();
  opt->include_noise = !req.exclude_noise();
  opt->return_samples = req.return_samples();
  opt->predictive_draws = req.predictive_draws();
  if (opt->predictive_draws && (model.task() != Task::kRegression ||
                                !opt->return_samples || !opt->include_noise)) {
    return absl::InvalidArgumentError(
        "predictive_draws needs a regression model, return_samples, and the "
        "noise included (not exclude_noise)");
  }
  opt->interval_levels.assign(req.interval_levels().begin(),
                              req.interval_levels().end());
  plan->adaptive = *std::move(adaptive);
  return absl::OkStatus();
}

void RunPlan(Engine& engine, std::shared_ptr<const Model> model,
             InputMatrix inputs, const PredictPlan& plan, bool rounds,
             std::function<void(absl::StatusOr<AdaptivePrediction>)> done,
             std::function<bool(const AdaptivePrediction&)> on_round) {
  const PredictOptions& opt = plan.options;
  absl::optional<AdaptiveOptions> adaptive = plan.adaptive;
  if (!adaptive && rounds && !plan.range &&
      opt.mode == PredictMode::kMonteCarlo && opt.samples >= 2 &&
      opt.interval_levels.empty()) {
    adaptive.emplace();  // no target: the T passes in rounds
    adaptive->max_samples = opt.samples;
    adaptive->min_samples = std::max(2, std::min(100, opt.samples / 64));
  }
  if (adaptive) {
    PredictOptions round_options = opt;
    round_options.keep_first_samples = 0;  // rounds keep only what is asked
    PredictAdaptiveAsync(engine, std::move(model), inputs, round_options,
                         *adaptive, std::move(done), std::move(on_round));
    return;
  }
  engine.PredictAsync(std::move(model), inputs, opt,
                      [done = std::move(done)](absl::StatusOr<Prediction> p) {
                        if (!p.ok()) return done(p.status());
                        done(FixedAnswer(*std::move(p)));
                      });
}

namespace {

// The index of `level` among kMonitoredLevels, or -1.
int MonitoredIndex(const PredictPlan& plan, size_t outputs, double level) {
  if (plan.monitored == nullptr || plan.monitored->size() != outputs) {
    return -1;
  }
  for (int i = 0; i < kLevels; ++i) {
    if (std::abs(level - kMonitoredLevels[i]) < 1e-12) return i;
  }
  return -1;
}

}  // namespace

double SetQuantile(const Model& model, const PredictPlan& plan, double level) {
  const Calibration& c = *model.spec().calibration;
  const int i = MonitoredIndex(plan, 1, level);
  return i >= 0 ? (*plan.monitored)[0][i]
                : ConformalQuantile(c.scores[0], level);
}

std::vector<std::vector<double>> ConformalQuantiles(const Model& model,
                                                    const PredictPlan& plan) {
  const PredictOptions& opt = plan.options;
  const auto& c = model.spec().calibration;
  if (!c || model.task() != Task::kRegression || opt.interval_levels.empty() ||
      opt.mode != PredictMode::kMonteCarlo || !opt.include_noise ||
      opt.samples < c->samples) {
    return {};
  }
  std::vector<std::vector<double>> q(c->scores.size());
  for (size_t d = 0; d < q.size(); ++d) {
    for (double level : opt.interval_levels) {
      const int i = MonitoredIndex(plan, q.size(), level);
      q[d].push_back(i >= 0 ? (*plan.monitored)[d][i]
                            : ConformalQuantile(c->scores[d], level));
    }
  }
  return q;
}

namespace {

void AddConformalIntervals(const mcdrop::v1::OutputPrediction& stats,
                           const std::vector<double>& quantiles,
                           const PredictOptions& opt,
                           mcdrop::v1::OutputPrediction* out) {
  for (size_t i = 0; i < quantiles.size(); ++i) {
    auto* iv = out->add_conformal_intervals();
    iv->set_level(opt.interval_levels[i]);
    // q = inf gives -inf/+inf (the std is > 0 with the noise included).
    iv->set_lower(stats.mean() - quantiles[i] * stats.std());
    iv->set_upper(stats.mean() + quantiles[i] * stats.std());
  }
}

void AddPredictionSets(const PredictRequest& req, const Model& model,
                       const PredictPlan& plan, const Prediction& p, int row,
                       mcdrop::v1::ClassPrediction* out) {
  if (req.set_levels_size() == 0 || !model.spec().calibration) return;
  const Calibration& c = *model.spec().calibration;
  const auto probs = absl::MakeConstSpan(
      p.mean.data() + static_cast<size_t>(row) * p.outputs, p.outputs);
  for (double level : req.set_levels()) {
    auto* set = out->add_prediction_sets();
    set->set_level(level);
    for (int k :
         PredictionSet(c.score, probs, SetQuantile(model, plan, level))) {
      set->add_classes(k);
    }
  }
}

void FillPassStatistics(const PredictRequest& req, const Prediction& p,
                        double noise, mcdrop::v1::PassStatistics* out) {
  const RunningStats& stats = *p.stats;
  out->set_leaf_passes(static_cast<int32_t>(kLeafPasses));
  out->set_begin(req.sample_range().begin());
  out->set_end(req.sample_range().end());
  out->set_rows(stats.rows);
  out->set_outputs(stats.outputs);
  out->set_noise_variance(noise);
  out->mutable_votes()->Add(stats.votes.begin(), stats.votes.end());
  for (const PassBlock& b : stats.blocks) {
    auto* block = out->add_blocks();
    block->set_level(b.level);
    block->set_index(b.index);
    block->set_passes(b.passes);
    block->mutable_mean()->Add(b.mean.begin(), b.mean.end());
    block->mutable_m2()->Add(b.m2.begin(), b.m2.end());
    block->mutable_sum_p()->Add(b.sum_p.begin(), b.sum_p.end());
    block->mutable_sum_p2()->Add(b.sum_p2.begin(), b.sum_p2.end());
    block->mutable_sum_entropy()->Add(b.sum_entropy.begin(),
                                      b.sum_entropy.end());
  }
}

}  // namespace

void FillPredictResponse(const PredictRequest& req, const ServedModel& served,
                         const PredictPlan& plan,
                         const AdaptivePrediction& answer,
                         PredictResponse* resp) {
  const PredictOptions& opt = plan.options;
  const Prediction& p = answer.prediction;
  resp->set_model(served.name);
  resp->set_version(served.version);
  const bool regression = p.task == Task::kRegression;
  resp->set_task(regression ? mcdrop::v1::REGRESSION
                            : mcdrop::v1::CLASSIFICATION);
  resp->set_samples(p.samples);
  resp->set_seed(opt.seed);
  resp->set_queue_seconds(p.queue_seconds);
  resp->set_compute_seconds(p.run_seconds);
  resp->set_final(answer.finished);
  resp->set_row_passes(answer.row_passes);
  const int D = p.outputs;
  if (plan.range && p.stats != nullptr) {
    FillPassStatistics(
        req, p,
        regression && opt.include_noise ? 1.0 / served.model.tau() : 0.0,
        resp->mutable_pass_statistics());
  }
  const std::vector<std::vector<double>> conformal =
      ConformalQuantiles(served.model, plan);
  // A range's figures are the client's to make, from the merged statistics.
  const int rows = plan.range ? 0 : p.rows;
  for (int r = 0; r < rows; ++r) {
    auto* row = resp->add_rows();
    row->set_samples(answer.samples_per_row[r]);
    if (plan.adaptive) row->set_target_met(answer.target_met[r]);
    const double* se = &answer.standard_error[static_cast<size_t>(r) * D];
    if (regression) {
      for (int d = 0; d < D; ++d) {
        auto* o = row->add_outputs();
        o->set_mean(p.Mean(r, d));
        o->set_variance(p.Variance(r, d));
        o->set_std(std::sqrt(p.Variance(r, d)));
        o->set_model_variance(p.model_variance[r * D + d]);
        o->set_standard_error(se[d]);
        for (int i = 0; i < p.levels; ++i) {
          auto* iv = o->add_intervals();
          iv->set_level(opt.interval_levels[i]);
          iv->set_lower(p.Interval(r, d, i).lower);
          iv->set_upper(p.Interval(r, d, i).upper);
        }
        if (!conformal.empty()) AddConformalIntervals(*o, conformal[d], opt, o);
      }
    } else {
      auto* c = row->mutable_classification();
      for (int d = 0; d < D; ++d) c->add_probabilities(p.Mean(r, d));
      c->set_predicted_class(p.predicted_class[r]);
      c->set_entropy(p.entropy[r]);
      c->set_mutual_information(p.mutual_information[r]);
      c->set_variation_ratio(p.variation_ratio[r]);
      if (opt.mode == PredictMode::kMonteCarlo) {
        c->mutable_standard_errors()->Add(se, se + D);
      }
      AddPredictionSets(req, served.model, plan, p, r, c);
    }
    // Rows of an adaptive answer carry their own samples (final only).
    if (plan.adaptive && req.return_samples() && answer.finished &&
        r < static_cast<int>(answer.row_samples.size())) {
      const std::vector<float>& v = answer.row_samples[r];
      row->mutable_sample_values()->Add(v.begin(), v.end());
    }
  }
  if (!req.return_samples() || !answer.finished || plan.adaptive) return;
  resp->add_sample_shape(p.samples);
  resp->add_sample_shape(p.rows);
  resp->add_sample_shape(D);
  auto* values = resp->mutable_sample_values();
  if (answer.row_samples.empty()) {
    values->Add(p.sample_values.begin(), p.sample_values.end());
    return;
  }
  // A fixed T run in rounds (streamed): every row has T passes.
  values->Reserve(
      static_cast<int>(static_cast<int64_t>(p.samples) * p.rows * D));
  for (int t = 0; t < p.samples; ++t) {
    for (int r = 0; r < p.rows; ++r) {
      const float* v =
          answer.row_samples[r].data() + static_cast<size_t>(t) * D;
      values->Add(v, v + D);
    }
  }
}

void SetPredictionIds(const std::string& id, PredictResponse* response) {
  if (id.empty()) return;
  response->set_prediction_id(id);
  for (int r = 0; r < response->rows_size(); ++r) {
    response->mutable_rows(r)->set_id(absl::StrCat(id, ":", r));
  }
}

}  // namespace mcdrop::server
