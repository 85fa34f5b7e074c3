// Copyright 2026 The mcdrop Authors.
//
// The Predict request path without gRPC around it: validation of a request
// against a model and the server's limits, and the response built from the
// engine's prediction. Kept apart from the service so that it can be fuzzed
// (fuzz/predict_request_fuzz.cc) and tested on its own.

#ifndef MCDROP_SERVER_REQUEST_H_
#define MCDROP_SERVER_REQUEST_H_

#include "absl/status/status.h"
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
};

// Checks `request` against `model` and `limits`: shape [B, Q] or [Q] with
// Q the model's inputs and 1 <= B <= max_batch_rows, as many values as the
// shape says, a known mode, 0 <= T <= max_samples (0: the model's default,
// else limits.default_samples), interval levels in (0, 1) for regression
// only (at most 16, with rows x outputs x T x levels within
// max_interval_work), and the samples kept for intervals or return_samples
// within max_message_bytes. On success sets `*rows` and the engine options (a
// fresh non-zero seed when the request's is 0). Input values are checked for
// NaN/Inf by the engine. Never crashes on any request.
absl::Status ValidatePredictRequest(const mcdrop::v1::PredictRequest& request,
                                    const Model& model, const Limits& limits,
                                    int* rows, PredictOptions* options);

// Fills `response` from a prediction made with `options` for `request`.
void FillPredictResponse(const mcdrop::v1::PredictRequest& request,
                         const ServedModel& served,
                         const PredictOptions& options,
                         const Prediction& prediction,
                         mcdrop::v1::PredictResponse* response);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_REQUEST_H_
