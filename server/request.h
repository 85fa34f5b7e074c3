// Copyright 2026 The mcdrop Authors.
//
// The Predict request path without gRPC around it: validation of a request
// against a model and the server's limits, and the response built from the
// engine's prediction. Kept apart from the service so that it can be fuzzed
// (fuzz/predict_request_fuzz.cc) and tested on its own.

#ifndef MCDROP_SERVER_REQUEST_H_
#define MCDROP_SERVER_REQUEST_H_

#include <array>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/optional.h"
#include "core/adaptive.h"
#include "core/engine.h"
#include "core/model.h"
#include "mcdrop/v1/inference.pb.h"
#include "server/model_registry.h"

namespace mcdrop::server {

struct Limits {
  int default_samples = 100;  // T when neither request nor model says
  int max_samples = 100000;   // largest T a request may ask for
  int max_batch_rows = 1024;  // rows per request
  int max_inflight = 256;     // admitted requests (computing or queued)
  int64_t max_message_bytes = 64 << 20;  // also bounds returned samples
  // rows x outputs x T x interval levels: bounds the interval step's work
  // (one sort of T samples per output, then a search per level).
  int64_t max_interval_work = int64_t{1} << 27;
  // The standard-error target of requests that give neither T nor a target
  // when their model's metadata has none (0: none, T is the default).
  double default_standard_error = 0.0;
  double default_relative_error = 0.0;
};

// The levels whose coverage the feedback monitor watches and adapts
// (server/feedback.h).
inline constexpr std::array<double, 4> kMonitoredLevels = {0.5, 0.8, 0.9, 0.95};
inline constexpr int kLevels = static_cast<int>(kMonitoredLevels.size());

// The conformal quantiles (scores) a prediction is made with at
// kMonitoredLevels: [output][level] for regression, [0][level] for a
// classifier. Empty for an uncalibrated model.
using MonitoredQuantiles = std::vector<std::array<double, kLevels>>;

// A checked request: what the engine runs.
struct PredictPlan {
  int rows = 0;
  PredictOptions options;
  // With a standard-error target (the request's, else the model's or the
  // server's default when the request gives no T): adaptive T, capped at
  // adaptive->max_samples; options.samples is then unused.
  absl::optional<AdaptiveOptions> adaptive;
  // With feedback on (FeedbackMonitor::Prepare): the quantiles in force when
  // the request was admitted; a requested interval or set level equal to a
  // monitored one uses them instead of the calibration's (they differ when
  // adaptive conformal inference is on). Null: the calibration's.
  std::shared_ptr<const MonitoredQuantiles> monitored;
  // With a sample_range: options.first_sample and options.samples are the
  // range's, keep_stats is set, and the response carries the statistics.
  bool range = false;
};

// Checks `request` against `model` and `limits`: shape [B, Q] or [Q] with
// Q the model's inputs (image models also [B, C, H, W] and [C, H, W]) and
// 1 <= B <= max_batch_rows, as many values as the shape says, a known mode,
// 0 <= T <= max_samples (0: the model's default, else
// limits.default_samples), interval levels in (0, 1) for regression only (at
// most 16, with rows x outputs x T x levels within max_interval_work), a
// target (finite errors >= 0, 2 <= min_samples <= max_samples <=
// limits.max_samples; not with intervals or DETERMINISTIC), and the samples
// kept for intervals or return_samples within max_message_bytes. A
// sample_range (proto) needs MONTE_CARLO, explicit samples and seed, no
// target, interval or set levels, 0 <= begin < end <= samples with both
// multiples of kLeafPasses (end may be samples), and end - begin within
// max_samples (samples itself may exceed it). On success
// fills `plan` (a fresh non-zero seed when the request's is 0). Input
// values are checked for NaN/Inf by the engine. Never crashes on any
// request.
absl::Status ValidatePredictRequest(const mcdrop::v1::PredictRequest& request,
                                    const Model& model, const Limits& limits,
                                    PredictPlan* plan);

// Runs a checked plan on `engine`: one request of T passes, or adaptive T;
// with `rounds` (streaming) a fixed T also runs in rounds so that `on_round`
// sees running estimates (a first round of T / 64, at least 2 and at most
// 100 passes, then doubling). `done` gets the answer once (a fixed T in the
// form of FixedAnswer); `on_round` as for PredictAdaptiveAsync. The memory
// behind `inputs` must stay valid until `done`.
void RunPlan(Engine& engine, std::shared_ptr<const Model> model,
             InputMatrix inputs, const PredictPlan& plan, bool rounds,
             std::function<void(absl::StatusOr<AdaptivePrediction>)> done,
             std::function<bool(const AdaptivePrediction&)> on_round = nullptr);

// [output][level]: the model's split-conformal quantiles at the plan's
// interval levels, when conformal intervals apply (a calibrated regression
// model, MONTE_CARLO mode, noise included, T at least the calibration's);
// empty otherwise. An interval is
// mean +- q * std (q may be +infinity: too few calibration rows).
std::vector<std::vector<double>> ConformalQuantiles(const Model& model,
                                                    const PredictPlan& plan);

// A calibrated classifier's set threshold at `level` (the plan's monitored
// quantile at a monitored level, else the calibration's).
double SetQuantile(const Model& model, const PredictPlan& plan, double level);

// Fills `response` from an answer (final or running) to `request`.
void FillPredictResponse(const mcdrop::v1::PredictRequest& request,
                         const ServedModel& served, const PredictPlan& plan,
                         const AdaptivePrediction& answer,
                         mcdrop::v1::PredictResponse* response);

// Sets the response's prediction_id and its rows' ids ("<id>:<row>"); an
// empty id (nothing kept) leaves them empty.
void SetPredictionIds(const std::string& id,
                      mcdrop::v1::PredictResponse* response);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_REQUEST_H_
