// Copyright 2026 The mcdrop Authors.
//
// libFuzzer target: the HTTP/REST inference path as the server runs it on
// the bytes of a connection: Beast's request parser with the listener's
// limits, the Open Inference Protocol's JSON and binary decoding
// (ParseHttpInferRequest), the translation to mcdrop.v1 and its validation,
// the engine, and the JSON/binary answer. The target path picks the model
// ("/c/" the classifier, else the regressor; both small, with small limits);
// a path with "/feedback" goes to the feedback reader and monitor.
// Any bytes must end in an error or an answer, never in a crash.

#include <google/protobuf/stubs/logging.h>

#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "core/engine.h"
#include "fuzz/fixture.h"
#include "server/oip.h"
#include "server/oip_http.h"
#include "server/request.h"

namespace {

namespace http = boost::beast::http;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const mcdrop::fuzz::Fixture& f = mcdrop::fuzz::GetFixture();
  static google::protobuf::LogSilencer quiet;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 << 10);
  parser.body_limit(1 << 16);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  const auto& req = parser.get();
  const std::string target(req.target());
  const mcdrop::server::ServedModel& served =
      f.Find(target.find("/c/") != std::string::npos   ? "c"
             : target.find("/i/") != std::string::npos ? "i"
                                                       : "r");
  if (target.find("/feedback") != std::string::npos) {
    auto feedback = mcdrop::server::ParseHttpFeedbackRequest(
        req.body(), std::string(served.name), "");
    mcdrop::v1::FeedbackResponse result;
    mcdrop::fuzz::FeedbackFixture feedback_fixture;
    if (feedback.ok() &&
        feedback_fixture.monitor.Submit(*feedback, &result).ok()) {
      if (result.results_size() != feedback->items_size()) std::abort();
      (void)mcdrop::server::FeedbackResponseJson(*feedback, result);
    }
    return 0;
  }
  absl::optional<absl::string_view> header_length;
  const auto it = req.find("Inference-Header-Content-Length");
  if (it != req.end()) {
    header_length = absl::string_view(it->value().data(), it->value().size());
  }
  auto parsed = mcdrop::server::ParseHttpInferRequest(
      req.body(), header_length,
      int64_t{f.limits.max_batch_rows} * served.model.input_size() + 1024);
  if (!parsed.ok()) {
    (void)mcdrop::server::HttpError(parsed.status());
    return 0;
  }
  auto call =
      mcdrop::server::TranslateInferRequest(parsed->request, served.model);
  if (!call.ok()) return 0;
  mcdrop::server::PredictPlan plan;
  if (!mcdrop::server::ValidatePredictRequest(call->predict, served.model,
                                              f.limits, &plan)
           .ok()) {
    return 0;
  }
  if (plan.rows < 1 || plan.rows > f.limits.max_batch_rows) std::abort();
  absl::Notification finished;
  absl::StatusOr<mcdrop::AdaptivePrediction> prediction;
  mcdrop::server::RunPlan(
      *f.engine,
      std::shared_ptr<const mcdrop::Model>(&served.model,
                                           [](const mcdrop::Model*) {}),
      mcdrop::InputMatrix(call->predict.inputs().data(), plan.rows,
                          served.model.input_size()),
      plan, /*rounds=*/false,
      [&](absl::StatusOr<mcdrop::AdaptivePrediction> a) {
        prediction = std::move(a);
        finished.Notify();
      });
  finished.WaitForNotification();
  if (!prediction.ok()) return 0;
  inference::ModelInferResponse response;
  mcdrop::server::FillInferResponse(parsed->request, *call, served, plan,
                                    *prediction, &response);
  if (response.outputs_size() != static_cast<int>(call->outputs.size())) {
    std::abort();
  }
  mcdrop::server::HttpResponse answer = mcdrop::server::HttpInferResponse(
      *parsed, response, f.limits.max_message_bytes);
  // An answer or the refusal of JSON too large for the limit.
  if (answer.body.empty() ||
      (answer.status != 200 &&
       answer.body.find("binary_data") == std::string::npos)) {
    std::abort();
  }
  return 0;
}
