// Copyright 2026 The mcdrop Authors.
//
// libFuzzer target: the Predict request path as the server runs it after
// gRPC hands over the bytes: parse, validate against the model and limits,
// run the engine, build the response. Three small models (regression,
// classification and a convolutional image classifier, chosen by the
// request's model name: fixture.h) and small limits keep
// each input fast. Any bytes must end in an error status or a response whose
// shape matches the request, never in a crash.

#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "core/engine.h"
#include "fuzz/fixture.h"
#include "mcdrop/v1/inference.pb.h"
#include "server/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const mcdrop::fuzz::Fixture& f = mcdrop::fuzz::GetFixture();
  static google::protobuf::LogSilencer quiet;  // invalid UTF-8 in strings
  mcdrop::v1::PredictRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const mcdrop::server::ServedModel& served = f.Find(request.model());
  int rows = 0;
  mcdrop::PredictOptions options;
  if (!mcdrop::server::ValidatePredictRequest(request, served.model, f.limits,
                                              &rows, &options)
           .ok()) {
    return 0;
  }
  if (rows < 1 || rows > f.limits.max_batch_rows ||
      options.samples > f.limits.max_samples) {
    std::abort();  // validation let through what it must refuse
  }
  auto prediction =
      f.engine->Predict(served.model,
                        mcdrop::InputMatrix(request.inputs().data(), rows,
                                            served.model.input_size()),
                        options);
  if (!prediction.ok()) return 0;  // e.g. NaN inputs
  mcdrop::v1::PredictResponse response;
  mcdrop::server::FillPredictResponse(request, served, options, *prediction,
                                      &response);
  if (response.rows_size() != rows) std::abort();
  if (prediction->levels != request.interval_levels_size()) std::abort();
  return 0;
}
