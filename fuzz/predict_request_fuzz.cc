// Copyright 2026 The mcdrop Authors.
//
// libFuzzer target: the Predict request path as the server runs it after
// gRPC hands over the bytes: parse, validate against the model and limits,
// run the engine, build the response. Two small models (regression and
// classification, chosen by the request's model name) and small limits keep
// each input fast. Any bytes must end in an error status or a response whose
// shape matches the request, never in a crash.

#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "core/engine.h"
#include "mcdrop/v1/inference.pb.h"
#include "server/request.h"
#include "tests/testing/models.h"

namespace {

struct Fixture {
  mcdrop::server::ServedModel regression, classification;
  std::unique_ptr<mcdrop::Engine> engine;
  mcdrop::server::Limits limits;
};

mcdrop::server::ServedModel Served(const char* name, mcdrop::ModelSpec spec) {
  auto model = mcdrop::Model::Create(std::move(spec));
  if (!model.ok()) std::abort();
  mcdrop::server::ServedModel s{name, 1, "fuzz", absl::Now(),
                                *std::move(model)};
  return s;
}

const Fixture& Get() {
  static const Fixture* f = [] {
    auto* f = new Fixture{
        Served("r", mcdrop::testing::RandomSpec({4, 16, 2}, {0.1f, 0.2f},
                                                mcdrop::Task::kRegression,
                                                mcdrop::Activation::kRelu, 1)),
        Served("c", mcdrop::testing::RandomSpec({4, 16, 3}, {0.1f, 0.2f},
                                                mcdrop::Task::kClassification,
                                                mcdrop::Activation::kTanh, 2)),
        nullptr,
        {}};
    f->engine = std::make_unique<mcdrop::Engine>(mcdrop::EngineOptions{1});
    f->limits.max_samples = 64;
    f->limits.default_samples = 16;
    f->limits.max_batch_rows = 16;
    f->limits.max_message_bytes = 1 << 16;
    return f;
  }();
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixture& f = Get();
  static google::protobuf::LogSilencer quiet;  // invalid UTF-8 in strings
  mcdrop::v1::PredictRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const mcdrop::server::ServedModel& served =
      request.model() == "c" ? f.classification : f.regression;
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
