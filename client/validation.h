// Copyright 2026 The mcdrop Authors.
//
// A client must not trust the shapes a server sends: every index into a
// PredictResponse (rows, outputs, probabilities, predicted_class,
// sample_values through sample_shape) is checked here first, against what the
// client asked, so that a wrong or hostile server gives a clear error, never
// an out-of-bounds read.

#ifndef MCDROP_CLIENT_VALIDATION_H_
#define MCDROP_CLIENT_VALIDATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "mcdrop/v1/inference.pb.h"

namespace mcdrop {

// What the client asked of Predict, and what it knows of the model.
struct PredictExpectation {
  // REGRESSION or CLASSIFICATION. TASK_UNSPECIFIED accepts either, as the
  // response states it.
  v1::Task task = v1::TASK_UNSPECIFIED;
  // Rows sent (B).
  int64_t rows = 0;
  // Values per row: regression outputs, or classification classes (the
  // model's output_size). 0 when not known: then every row must have as many
  // as the first, and at least one.
  int outputs = 0;
  // Whether return_samples was asked.
  bool return_samples = false;
  // The interval levels asked (regression), in request order.
  std::vector<double> interval_levels;
};

// What `request` alone implies: rows from its shape ([B, Q] or a single row
// [Q]), return_samples and the interval levels as asked; task and outputs
// not known.
PredictExpectation ExpectationOf(const v1::PredictRequest& request);

// OK when `response` is consistent with `expected`; else Internal (as gRPC
// reports a response it cannot parse), with a message naming what is
// inconsistent. Checks, in this order:
//   - the task is REGRESSION or CLASSIFICATION, and the expected one if given;
//   - one row per row sent;
//   - regression: `outputs` outputs per row, each with one interval per
//     level asked, at that level; classification: `outputs` probabilities
//     per row and predicted_class in [0, outputs);
//   - sample_shape is present when return_samples was asked; when present
//     it is [T, B, D] with T = samples >= 1, B = rows and D = outputs, and
//     sample_values holds exactly T * B * D values (none without a shape);
//     or, when rows carry their own samples (a standard-error target), no
//     sample_shape and each row has 1 <= rows(r).samples <= samples and
//     rows(r).samples * D sample_values.
// After an OK, a caller may index rows(r) for r < rows, outputs(d) or
// probabilities(d) for d < outputs, intervals(l) for every level asked,
// probabilities(predicted_class), and sample_values((t * B + r) * D + d).
// Thread-safe (reads its arguments only).
absl::Status ValidatePredictResponse(const v1::PredictResponse& response,
                                     const PredictExpectation& expected);

}  // namespace mcdrop

#endif  // MCDROP_CLIENT_VALIDATION_H_
