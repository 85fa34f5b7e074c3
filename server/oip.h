// Copyright 2026 The mcdrop Authors.
//
// The Open Inference Protocol (KServe V2) mapping, without gRPC around it:
// an OIP ModelInferRequest becomes an mcdrop.v1 PredictRequest (so the same
// validation, limits and errors apply), and a prediction becomes an OIP
// ModelInferResponse with every output in raw_output_contents. Names and
// types are documented in docs/api.md ("Open Inference Protocol").

#ifndef MCDROP_SERVER_OIP_H_
#define MCDROP_SERVER_OIP_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "inference/open_inference_grpc.pb.h"
#include "mcdrop/v1/inference.pb.h"
#include "server/model_registry.h"
#include "server/request.h"

namespace mcdrop::server {

// The one input tensor's name.
inline constexpr char kOipInputName[] = "input";

// What an OIP call asks for, translated.
struct OipCall {
  mcdrop::v1::PredictRequest predict;
  // Outputs to return, in order (the request's `outputs`, or every default
  // output of the model's task when it names none).
  std::vector<std::string> outputs;
  // The parameter "timeout" (microseconds, as Triton's clients send it):
  // the request's deadline is then at most this long after its arrival.
  absl::Duration timeout = absl::InfiniteDuration();
  // True when the request named its outputs.
  bool outputs_named = false;
};

// After the request is checked (`plan`): conformal_lower / conformal_upper
// need conformal intervals to apply (ConformalQuantiles, request.h: among
// others a T at least the calibration's). Named, they are refused
// (InvalidArgument saying why); among the default outputs, they are dropped.
absl::Status SettleConformalOutputs(const Model& model, const PredictPlan& plan,
                                    OipCall* call);

// Translates `request` for `model`: exactly one input named "input" with
// datatype FP32, FP64, FP16 or BF16 (converted to f32), in `contents` or
// `raw_input_contents` (not both), whose element count matches its shape;
// parameters "samples" and "seed" (integers), "mode" ("monte_carlo" or
// "deterministic"), "exclude_noise" (bool), "interval_levels" (a double, or
// a string of comma-separated levels), "timeout" (a positive integer of
// microseconds), "predictive_draws" (bool: the "samples" output holds draws
// y = f + N(0, 1/tau)), "target_standard_error" and "target_relative_error"
// (doubles) with "min_samples" and "max_samples" (integers): a
// standard-error target (mcdrop.v1's PredictRequest.target; its outputs
// "standard_error" and "samples_per_row" are then returned by default, and
// "samples" is [largest T, B, D] padded with NaN); requested outputs must
// be names the
// model has. InvalidArgument saying what is wrong; the shape and values are
// then checked as mcdrop.v1 checks them (ValidatePredictRequest).
absl::StatusOr<OipCall> TranslateInferRequest(
    const inference::ModelInferRequest& request, const Model& model);

// The output names a model has ("samples" and the interval bounds only when
// asked for are included).
std::vector<std::string> OipOutputNames(const Model& model);

// Fills `response` (raw outputs, the id echoed, parameters "samples" and
// "seed" with the T and seed used).
void FillInferResponse(const inference::ModelInferRequest& request,
                       const OipCall& call, const ServedModel& served,
                       const PredictPlan& plan,
                       const AdaptivePrediction& answer,
                       inference::ModelInferResponse* response);

// ModelMetadata: the input tensor, every output with its datatype and shape.
void DescribeOipModel(const ServedModel& served,
                      const std::vector<int64_t>& versions,
                      inference::ModelMetadataResponse* response);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_OIP_H_
