// Copyright 2026 The mcdrop Authors.

#include "client/load_generator.h"

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>

#include "absl/status/status.h"

namespace mcdrop {
namespace {

using Clock = std::chrono::steady_clock;

// The code's canonical name ("OK", "INVALID_ARGUMENT", ...): gRPC's codes
// have absl's numbers.
std::string CodeName(grpc::StatusCode code) {
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

// One call in flight.
struct Call {
  grpc::ClientContext context;
  grpc::Status status;
  Clock::time_point start;
  bool measured = false;
  int64_t rows = 0;
  v1::PredictResponse predict_response;
  grpc::health::v1::HealthCheckResponse health_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::PredictResponse>> predict;
  std::unique_ptr<
      grpc::ClientAsyncResponseReader<grpc::health::v1::HealthCheckResponse>>
      health;
};

}  // namespace

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

absl::StatusOr<LoadReport> RunLoad(
    const Client& client, const LoadOptions& options,
    const std::vector<v1::PredictRequest>& requests) {
  if (options.concurrency < 1)
    return absl::InvalidArgumentError("concurrency must be >= 1");
  if (options.rpc == LoadOptions::Rpc::kPredict && requests.empty()) {
    return absl::InvalidArgumentError("no Predict request to send");
  }
  if (options.requests <= 0 && options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "give a number of requests or a duration > 0");
  }
  grpc::CompletionQueue cq;
  const grpc::health::v1::HealthCheckRequest health_request;
  auto health_stub = grpc::health::v1::Health::NewStub(client.channel());

  const Clock::time_point t0 = Clock::now();
  const Clock::time_point measure_from =
      t0 + absl::ToChronoNanoseconds(options.warmup);
  const Clock::time_point stop_at =
      measure_from + absl::ToChronoNanoseconds(options.duration);
  int64_t measured_started = 0, next_request = 0, outstanding = 0;

  LoadReport report;
  std::vector<double> latencies;
  Clock::time_point first_measured_start = Clock::time_point::max();
  Clock::time_point last_measured_end = t0;
  double passes = 0, rows = 0;

  // Starts one more call if the plan allows; returns false when done.
  auto start_call = [&]() -> bool {
    const Clock::time_point now = Clock::now();
    const bool measuring = now >= measure_from;
    if (measuring) {
      if (options.requests > 0 ? measured_started >= options.requests
                               : now >= stop_at) {
        return false;
      }
      ++measured_started;
    } else {
      ++report.warmup_calls;
    }
    auto* call = new Call();
    call->measured = measuring;
    client.PrepareContext(&call->context, options.timeout);
    call->start = Clock::now();
    if (measuring)
      first_measured_start = std::min(first_measured_start, call->start);
    if (options.rpc == LoadOptions::Rpc::kPredict) {
      const v1::PredictRequest& req =
          requests[next_request++ % requests.size()];
      call->rows = req.shape_size() == 2 ? req.shape(0) : 1;
      call->predict = client.stub().AsyncPredict(&call->context, req, &cq);
      call->predict->Finish(&call->predict_response, &call->status, call);
    } else {
      call->health =
          health_stub->AsyncCheck(&call->context, health_request, &cq);
      call->health->Finish(&call->health_response, &call->status, call);
    }
    ++outstanding;
    return true;
  };

  for (int i = 0; i < options.concurrency; ++i) {
    if (!start_call()) break;
  }
  void* tag;
  bool ok;
  while (outstanding > 0 && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    const Clock::time_point end = Clock::now();
    --outstanding;
    if (call->measured) {
      latencies.push_back(
          std::chrono::duration<double>(end - call->start).count());
      last_measured_end = std::max(last_measured_end, end);
      ++report.codes[CodeName(call->status.error_code())];
      if (!call->status.ok()) {
        ++report.errors;
      } else if (options.rpc == LoadOptions::Rpc::kPredict) {
        rows += call->rows;
        passes +=
            static_cast<double>(call->rows) * call->predict_response.samples();
      }
    }
    start_call();
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }

  report.count = static_cast<int64_t>(latencies.size());
  if (report.count > 0) {
    report.seconds =
        std::chrono::duration<double>(last_measured_end - first_measured_start)
            .count();
    std::sort(latencies.begin(), latencies.end());
    report.min = latencies.front();
    report.max = latencies.back();
    report.mean =
        std::accumulate(latencies.begin(), latencies.end(), 0.0) / report.count;
    report.p50 = Quantile(latencies, 0.50);
    report.p90 = Quantile(latencies, 0.90);
    report.p99 = Quantile(latencies, 0.99);
    report.p999 = Quantile(latencies, 0.999);
    if (report.seconds > 0) {
      report.requests_per_second = report.count / report.seconds;
      report.rows_per_second = rows / report.seconds;
      report.passes_per_second = passes / report.seconds;
    }
  }
  return report;
}

}  // namespace mcdrop
