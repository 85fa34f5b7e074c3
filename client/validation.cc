// Copyright 2026 The mcdrop Authors.

#include "client/validation.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace mcdrop {
namespace {

template <typename... Args>
absl::Status Inconsistent(const Args&... what) {
  return absl::InternalError(
      absl::StrCat("inconsistent Predict response: ", what...));
}

absl::Status CheckTask(const v1::PredictResponse& response,
                       const PredictExpectation& expected) {
  const v1::Task task = response.task();
  if (task != v1::REGRESSION && task != v1::CLASSIFICATION) {
    return Inconsistent("task ", v1::Task_Name(task),
                        " is neither REGRESSION nor CLASSIFICATION");
  }
  if (expected.task != v1::TASK_UNSPECIFIED && task != expected.task) {
    return Inconsistent("task ", v1::Task_Name(task), ", the model's is ",
                        v1::Task_Name(expected.task));
  }
  return absl::OkStatus();
}

// Outputs (regression) or probabilities (classification) of row `r`.
int ValuesOf(const v1::PredictResponse& response, int r) {
  const v1::RowPrediction& row = response.rows(r);
  return response.task() == v1::REGRESSION
             ? row.outputs_size()
             : row.classification().probabilities_size();
}

absl::Status CheckRegressionRow(const v1::PredictResponse& response, int r,
                                int outputs,
                                const std::vector<double>& levels) {
  const v1::RowPrediction& row = response.rows(r);
  if (row.outputs_size() != outputs) {
    return Inconsistent("row ", r, " has ", row.outputs_size(),
                        " outputs, expected ", outputs);
  }
  for (int d = 0; d < outputs; ++d) {
    const v1::OutputPrediction& o = row.outputs(d);
    if (o.intervals_size() != static_cast<int>(levels.size())) {
      return Inconsistent("row ", r, " output ", d, " has ", o.intervals_size(),
                          " intervals for the ", levels.size(),
                          " levels asked");
    }
    for (size_t l = 0; l < levels.size(); ++l) {
      if (o.intervals(l).level() != levels[l]) {
        return Inconsistent("row ", r, " output ", d, " interval ", l,
                            " is at level ", o.intervals(l).level(), ", asked ",
                            levels[l]);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckClassificationRow(const v1::PredictResponse& response, int r,
                                    int classes) {
  const v1::ClassPrediction& c = response.rows(r).classification();
  if (c.probabilities_size() != classes) {
    return Inconsistent("row ", r, " has ", c.probabilities_size(),
                        " class probabilities, expected ", classes);
  }
  if (c.predicted_class() < 0 || c.predicted_class() >= classes) {
    return Inconsistent("row ", r, ": predicted_class ", c.predicted_class(),
                        " is not in [0, ", classes, ")");
  }
  return absl::OkStatus();
}

// Checks every row; sets *outputs to the values per row (the expected count,
// or the first row's when that is not known).
absl::Status CheckRows(const v1::PredictResponse& response,
                       const PredictExpectation& expected, int* outputs) {
  if (response.rows_size() != expected.rows) {
    return Inconsistent(response.rows_size(), " rows for the ", expected.rows,
                        " rows sent");
  }
  *outputs = expected.outputs;
  if (*outputs <= 0 && response.rows_size() > 0) {
    *outputs = ValuesOf(response, 0);
    if (*outputs < 1) return Inconsistent("row 0 has no outputs");
  }
  for (int r = 0; r < response.rows_size(); ++r) {
    MCDROP_RETURN_IF_ERROR(response.task() == v1::REGRESSION
                               ? CheckRegressionRow(response, r, *outputs,
                                                    expected.interval_levels)
                               : CheckClassificationRow(response, r, *outputs));
  }
  return absl::OkStatus();
}

// a * b * c for non-negative factors, or -1 if it does not fit in int64_t.
int64_t CheckedProduct(int64_t a, int64_t b, int64_t c) {
  int64_t ab, abc;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc))
    return -1;
  return abc;
}

// With a standard-error target, rows stop at different T and carry their
// own samples, [samples, D] each.
absl::Status CheckRowSamples(const v1::PredictResponse& response, int outputs) {
  if (response.sample_shape_size() != 0) {
    return Inconsistent("samples both per row and in sample_shape");
  }
  for (int r = 0; r < response.rows_size(); ++r) {
    const v1::RowPrediction& row = response.rows(r);
    if (row.samples() < 1 || row.samples() > response.samples()) {
      return Inconsistent("row ", r, ": samples ", row.samples(),
                          " is not in [1, ", response.samples(), "]");
    }
    if (CheckedProduct(row.samples(), outputs, 1) != row.sample_values_size()) {
      return Inconsistent("row ", r, ": ", row.sample_values_size(),
                          " sample_values for ", row.samples(), " samples of ",
                          outputs, " outputs");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSamples(const v1::PredictResponse& response,
                          const PredictExpectation& expected, int outputs) {
  for (const v1::RowPrediction& row : response.rows()) {
    if (row.sample_values_size() > 0) {
      return CheckRowSamples(response, outputs);
    }
  }
  if (response.sample_shape_size() == 0) {
    if (expected.return_samples) {
      return Inconsistent("no sample_shape although return_samples was asked");
    }
    if (response.sample_values_size() != 0) {
      return Inconsistent(response.sample_values_size(),
                          " sample_values without a sample_shape");
    }
    return absl::OkStatus();
  }
  const std::string shape = absl::StrCat(
      "sample_shape [", absl::StrJoin(response.sample_shape(), ", "), "]");
  if (response.sample_shape_size() != 3) {
    return Inconsistent(shape, " is not [T, B, D]");
  }
  const int64_t T = response.sample_shape(0), B = response.sample_shape(1),
                D = response.sample_shape(2);
  if (T < 1 || T != response.samples()) {
    return Inconsistent(shape, ": T is not the response's samples (",
                        response.samples(), ") or is < 1");
  }
  if (B != expected.rows) {
    return Inconsistent(shape, ": B is not the ", expected.rows, " rows sent");
  }
  // The values per row are unknown only when no row was sent (then B = 0).
  if (outputs > 0 ? D != outputs : D < 0) {
    return Inconsistent(shape, ": D is not the ", outputs, " outputs per row");
  }
  if (CheckedProduct(T, B, D) != response.sample_values_size()) {
    return Inconsistent(shape, " does not hold the ",
                        response.sample_values_size(), " sample_values");
  }
  return absl::OkStatus();
}

}  // namespace

PredictExpectation ExpectationOf(const v1::PredictRequest& request) {
  PredictExpectation e;
  e.rows = request.shape_size() == 2 ? request.shape(0) : 1;
  e.return_samples = request.return_samples();
  e.interval_levels.assign(request.interval_levels().begin(),
                           request.interval_levels().end());
  return e;
}

absl::Status ValidatePredictResponse(const v1::PredictResponse& response,
                                     const PredictExpectation& expected) {
  MCDROP_RETURN_IF_ERROR(CheckTask(response, expected));
  int outputs = 0;
  MCDROP_RETURN_IF_ERROR(CheckRows(response, expected, &outputs));
  return CheckSamples(response, expected, outputs);
}

}  // namespace mcdrop
