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

}  // namespace

absl::Status ValidatePredictRequest(const PredictRequest& req,
                                    const Model& model, const Limits& limits,
                                    int* rows, PredictOptions* opt) {
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
  if (mc && t > limits.max_samples) {
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
  return absl::OkStatus();
}

void FillPredictResponse(const PredictRequest& req, const ServedModel& served,
                         const PredictOptions& opt, const Prediction& p,
                         PredictResponse* resp) {
  resp->set_model(served.name);
  resp->set_version(served.version);
  const bool regression = p.task == Task::kRegression;
  resp->set_task(regression ? mcdrop::v1::REGRESSION
                            : mcdrop::v1::CLASSIFICATION);
  resp->set_samples(p.samples);
  resp->set_seed(opt.seed);
  resp->set_queue_seconds(p.queue_seconds);
  resp->set_compute_seconds(p.run_seconds);
  for (int r = 0; r < p.rows; ++r) {
    auto* row = resp->add_rows();
    if (regression) {
      for (int d = 0; d < p.outputs; ++d) {
        auto* o = row->add_outputs();
        o->set_mean(p.Mean(r, d));
        o->set_variance(p.Variance(r, d));
        o->set_std(std::sqrt(p.Variance(r, d)));
        o->set_model_variance(p.model_variance[r * p.outputs + d]);
        for (int i = 0; i < p.levels; ++i) {
          auto* iv = o->add_intervals();
          iv->set_level(opt.interval_levels[i]);
          iv->set_lower(p.Interval(r, d, i).lower);
          iv->set_upper(p.Interval(r, d, i).upper);
        }
      }
    } else {
      auto* c = row->mutable_classification();
      for (int d = 0; d < p.outputs; ++d) c->add_probabilities(p.Mean(r, d));
      c->set_predicted_class(p.predicted_class[r]);
      c->set_entropy(p.entropy[r]);
      c->set_mutual_information(p.mutual_information[r]);
      c->set_variation_ratio(p.variation_ratio[r]);
    }
  }
  if (req.return_samples()) {
    resp->add_sample_shape(p.samples);
    resp->add_sample_shape(p.rows);
    resp->add_sample_shape(p.outputs);
    resp->mutable_sample_values()->Add(p.sample_values.begin(),
                                       p.sample_values.end());
  }
}

}  // namespace mcdrop::server
