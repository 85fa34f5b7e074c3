// Copyright 2026 The mcdrop Authors.
//
// The request fuzzers' models, engine and limits: a small regressor ("r", 4
// inputs, 2 outputs), classifier ("c", 4 inputs, 3 classes) and format v2
// image classifier ("i", [2, 9, 8] inputs, every layer kind, 3 classes), one
// engine thread, and limits small enough that each input runs fast.

#ifndef MCDROP_FUZZ_FIXTURE_H_
#define MCDROP_FUZZ_FIXTURE_H_

#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/strings/string_view.h"
#include "core/engine.h"
#include "server/feedback.h"
#include "server/model_registry.h"
#include "server/request.h"
#include "tests/testing/layer_specs.h"
#include "tests/testing/models.h"

namespace mcdrop::fuzz {

struct Fixture {
  server::ServedModel regression, classification, image;
  std::unique_ptr<Engine> engine;
  server::Limits limits;

  // "c" and "i" by name; anything else is the regressor.
  const server::ServedModel& Find(absl::string_view name) const {
    return name == "c" ? classification : name == "i" ? image : regression;
  }
};

inline server::ServedModel Served(const char* name, ModelSpec spec) {
  auto model = Model::Create(std::move(spec));
  if (!model.ok()) std::abort();
  return server::ServedModel{name, 1, "fuzz", absl::Now(), *std::move(model)};
}

// `spec` with a small calibration (score lists of 9 rows), so that the
// conformal intervals and prediction sets are on the fuzzed paths.
inline ModelSpec Calibrated(ModelSpec spec, ConformalScore score, int lists) {
  Calibration c;
  c.score = score;
  c.samples = 16;
  c.scores.assign(lists, {0.05, 0.1, 0.2, 0.4, 0.5, 0.7, 0.8, 0.9, 2.5});
  spec.calibration = c;
  return spec;
}

// Made once, never destroyed (the fuzzer exits without tearing down).
inline const Fixture& GetFixture() {
  static const Fixture* f = [] {
    auto* f = new Fixture{
        Served("r", Calibrated(testing::RandomSpec({4, 16, 2}, {0.1f, 0.2f},
                                                   Task::kRegression,
                                                   Activation::kRelu, 1),
                               ConformalScore::kNormalizedResidual, 2)),
        Served("c", Calibrated(testing::RandomSpec({4, 16, 3}, {0.1f, 0.2f},
                                                   Task::kClassification,
                                                   Activation::kTanh, 2),
                               ConformalScore::kLac, 1)),
        Served("i", testing::ConvSpec(Task::kClassification, 3)),
        nullptr,
        {}};
    f->engine = std::make_unique<Engine>(EngineOptions{1});
    f->limits.max_samples = 64;
    f->limits.default_samples = 16;
    f->limits.max_batch_rows = 16;
    f->limits.max_message_bytes = 1 << 16;
    return f;
  }();
  return *f;
}

// A feedback monitor of its own for one input (1 MB, adaptive conformal
// inference on): what an input allocates is freed when it ends, so
// libFuzzer's leak check does not run after every input.
struct FeedbackFixture {
  std::shared_ptr<prometheus::Registry> registry =
      std::make_shared<prometheus::Registry>();
  server::FeedbackMonitor monitor{
      server::FeedbackOptions{.store_bytes = 1 << 20,
                              .window = 64,
                              .max_items = 64,
                              .adaptive_rate = 0.05},
      registry.get()};
};

}  // namespace mcdrop::fuzz

#endif  // MCDROP_FUZZ_FIXTURE_H_
