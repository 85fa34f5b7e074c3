// Copyright 2026 The mcdrop Authors.
//
// A closed-loop load generator in the manner of ghz: `concurrency` calls are
// kept in flight over gRPC's asynchronous API, each completion immediately
// starting the next, from one thread. Calls started during the warm-up are
// not measured; every measured call is counted exactly once.

#ifndef MCDROP_CLIENT_LOAD_GENERATOR_H_
#define MCDROP_CLIENT_LOAD_GENERATOR_H_

#include <grpcpp/channel.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace mcdrop {

struct LoadOptions {
  // mcdrop.v1 Predict, grpc.health.v1 Check, or the Open Inference
  // Protocol's ModelInfer (the Predict requests translated: one FP32 raw
  // input, parameters samples/seed/mode/exclude_noise/interval_levels).
  enum class Rpc { kPredict, kHealth, kOipInfer };
  Rpc rpc = Rpc::kPredict;
  int concurrency = 1;
  // Stop after `requests` measured calls when > 0, else after `duration`.
  int64_t requests = 0;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration timeout = absl::Seconds(30);
  // When > 0, the report's `series` has the measured calls per interval of
  // this length, by completion time.
  absl::Duration interval = absl::ZeroDuration();
  // Keep every measured call in the report's `calls`.
  bool keep_calls = false;
};

// One measured call: when it completed (seconds from the start of the
// measured calls), its latency, and its code name.
struct LoadCall {
  double end = 0, latency = 0;
  std::string code;
};

// The measured calls that completed in one interval of a run.
struct LoadInterval {
  double start = 0;  // seconds from the start of the measured calls
  int64_t count = 0, errors = 0;
  double p50 = 0, p99 = 0;  // latency, seconds (0 without calls)
};

struct LoadReport {
  int64_t count = 0;         // measured calls
  int64_t errors = 0;        // measured calls that did not return OK
  int64_t warmup_calls = 0;  // calls started during the warm-up
  double seconds = 0.0;      // first measured start to last measured completion
  double requests_per_second = 0.0;
  double rows_per_second = 0.0;
  double passes_per_second = 0.0;  // rows x T of the OK calls
  // Latency of the measured calls, seconds, from the recorded values.
  double min = 0, mean = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  std::map<std::string, int64_t> codes;  // by status code name
  // Wall-clock time (Unix seconds) at which the measured calls began, and
  // the calls per interval when LoadOptions::interval is set.
  double start_unix = 0;
  std::vector<LoadInterval> series;
  std::vector<LoadCall> calls;  // with LoadOptions::keep_calls
};

// Runs the load against `client`. Predict calls cycle through `requests`
// (which must not be empty for Rpc::kPredict). InvalidArgument for bad
// options.
absl::StatusOr<LoadReport> RunLoad(
    const Client& client, const LoadOptions& options,
    const std::vector<v1::PredictRequest>& requests);

// The same closed loop over HTTP/1.1 keep-alive connections (one per
// concurrent call, Boost.Beast, one thread) to the Open Inference
// Protocol's REST API at `host`:`port` (plaintext): each Predict request
// becomes POST /v2/models/{model}/infer with JSON tensors, or with the
// binary tensor extension when `binary`. `token`, when set, is sent as a
// bearer token. Codes are "OK" for 200, else "HTTP_<status>" (or
// "UNAVAILABLE" when the connection failed).
absl::StatusOr<LoadReport> RunHttpLoad(
    const std::string& host, int port, const std::string& token, bool binary,
    const LoadOptions& options,
    const std::vector<v1::PredictRequest>& requests);

// The q-quantile (0..1) of sorted values, nearest rank.
double Quantile(const std::vector<double>& sorted, double q);

}  // namespace mcdrop

#endif  // MCDROP_CLIENT_LOAD_GENERATOR_H_
