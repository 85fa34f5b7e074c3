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

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "absl/synchronization/notification.h"
#include "core/adaptive.h"
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
  mcdrop::server::PredictPlan plan;
  if (!mcdrop::server::ValidatePredictRequest(request, served.model, f.limits,
                                              &plan)
           .ok()) {
    return 0;
  }
  const int rows = plan.rows;
  if (rows < 1 || rows > f.limits.max_batch_rows ||
      plan.options.samples > f.limits.max_samples ||
      (plan.adaptive && (plan.adaptive->max_samples > f.limits.max_samples ||
                         plan.adaptive->min_samples < 2))) {
    std::abort();  // validation let through what it must refuse
  }
  mcdrop::fuzz::FeedbackFixture feedback_fixture;
  feedback_fixture.monitor.Prepare(served, &plan);
  // Half the inputs run as PredictStream does (in rounds, with running
  // estimates), half as Predict.
  const bool rounds = request.seed() % 2 == 1;
  absl::Notification finished;
  absl::StatusOr<mcdrop::AdaptivePrediction> answer;
  mcdrop::server::RunPlan(
      *f.engine,
      std::shared_ptr<const mcdrop::Model>(&served.model,
                                           [](const mcdrop::Model*) {}),
      mcdrop::InputMatrix(request.inputs().data(), rows,
                          served.model.input_size()),
      plan, rounds,
      [&](absl::StatusOr<mcdrop::AdaptivePrediction> a) {
        answer = std::move(a);
        finished.Notify();
      },
      [&](const mcdrop::AdaptivePrediction& so_far) {
        mcdrop::v1::PredictResponse running;
        mcdrop::server::FillPredictResponse(request, served, plan, so_far,
                                            &running);
        if (running.rows_size() != rows || running.final()) std::abort();
        return true;
      });
  finished.WaitForNotification();
  if (!answer.ok()) return 0;  // e.g. NaN inputs
  mcdrop::v1::PredictResponse response;
  mcdrop::server::FillPredictResponse(request, served, plan, *answer,
                                      &response);
  if (response.rows_size() != rows || !response.final()) std::abort();
  if (answer->prediction.levels != request.interval_levels_size()) {
    std::abort();
  }
  // Feedback for every row, with the request's own (hostile) values as
  // the observed targets and labels.
  mcdrop::server::SetPredictionIds(
      feedback_fixture.monitor.Record(served, plan, *answer), &response);
  mcdrop::v1::FeedbackRequest feedback;
  feedback.set_model(request.model().empty() ? "r" : request.model());
  const int D = served.model.output_size();
  for (int r = 0; r < rows; ++r) {
    auto* item = feedback.add_items();
    item->set_id(response.rows(r).id());
    const float v = request.inputs(r * served.model.input_size());
    if (served.model.task() == mcdrop::Task::kRegression) {
      for (int d = 0; d < D && d < request.inputs_size(); ++d)
        item->add_targets(request.inputs(d));
    } else {
      item->set_label(
          std::isfinite(v) && std::abs(v) < 1e6 ? static_cast<int>(v) : -1);
    }
  }
  mcdrop::v1::FeedbackResponse result;
  if (feedback_fixture.monitor.Submit(feedback, &result).ok() &&
      (result.results_size() != rows || result.accepted() > rows)) {
    std::abort();
  }
  return 0;
}
