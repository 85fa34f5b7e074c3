// Copyright 2026 The mcdrop Authors.
//
// The server's Prometheus metrics (prometheus-cpp). Families and their
// labelled children are made once, when the server starts or a model is
// added, and kept by pointer: nothing on the request path looks a metric up
// by its labels.

#ifndef MCDROP_SERVER_METRICS_H_
#define MCDROP_SERVER_METRICS_H_

#include <grpcpp/support/status.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/adaptive.h"
#include "core/engine.h"
#include "server/model_registry.h"

namespace mcdrop::server {

// Where a request came in: its transport and API, the labels "protocol"
// (grpc, http) and "api" (mcdrop.v1, oip) of the request counters and
// latency histograms.
// PredictStream calls are api "mcdrop.v1.stream".
enum class Endpoint {
  kGrpcV1 = 0,
  kGrpcOip = 1,
  kHttpOip = 2,
  kGrpcV1Stream = 3
};
inline constexpr int kEndpoints = 4;

// The children of one model version's labels.
struct ModelMetrics {
  // By endpoint, then by code.
  std::array<std::map<grpc::StatusCode, prometheus::Counter*>, kEndpoints>
      requests;
  std::array<prometheus::Counter*, kEndpoints> unknown_code{};
  std::array<prometheus::Histogram*, kEndpoints> duration{};
  prometheus::Histogram* queue = nullptr;
  prometheus::Histogram* compute = nullptr;
  prometheus::Histogram* batch_rows = nullptr;
  prometheus::Counter* passes = nullptr;
  // Running-estimate messages sent by PredictStream (the final answers are
  // counted in requests).
  prometheus::Counter* stream_messages = nullptr;
  // The T each row of a request with a standard-error target used.
  prometheus::Histogram* adaptive_samples = nullptr;
  std::vector<prometheus::Histogram*> predictive_std;   // regression, by output
  prometheus::Histogram* entropy = nullptr;             // classification
  prometheus::Histogram* mutual_information = nullptr;  // classification
  // Input drift, per version with an input standardisation: values checked,
  // and those more than kDriftZ training std from the training mean.
  prometheus::Counter* input_values = nullptr;
  prometheus::Counter* input_values_out_of_range = nullptr;
  static constexpr double kDriftZ = 4.0;

  void CountRequest(Endpoint endpoint, grpc::StatusCode code) const;
  void ObserveDuration(Endpoint endpoint, double seconds) const {
    duration[static_cast<int>(endpoint)]->Observe(seconds);
  }
  // Counts an admitted request's input values against `model`'s input
  // standardisation (per value, or per channel for images); nothing for a
  // model without one.
  void ObserveInputs(const Model& model, absl::Span<const float> values) const;
  // Records a finished answer's work and uncertainty (with `adaptive`, the
  // T of each row too).
  void Observe(const AdaptivePrediction& answer, bool adaptive) const;
};

class Metrics {
 public:
  // Starts the /metrics endpoint on `address` ("host:port"; port 0 picks a
  // free one); an empty address keeps the metrics in memory only. `engine`
  // supplies the thread-pool gauges at scrape time and must outlive this.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(
      const std::string& address, const Engine* engine);
  ~Metrics();

  // The children for `model` (a name and version: versions of one name may
  // differ in task and shape), made on first use and kept. Thread-safe.
  const ModelMetrics* ForModel(const ServedModel& model);
  // For requests that name no served model (label model="").
  const ModelMetrics* Unknown() const { return unknown_; }

  prometheus::Gauge& inflight() { return *inflight_; }
  // Counts a gRPC call that arrived as a retry attempt of the client's retry
  // policy (gRFC A6: it carries grpc-previous-rpc-attempts = `previous`).
  // Thread-safe; `endpoint` is a gRPC one.
  void CountRetryAttempt(Endpoint endpoint, int previous);
  // Where other parts of the server register their families (once).
  prometheus::Registry& registry() { return *registry_; }
  // Sets mcdrop_model_info to exactly the given (name, version, task) set.
  void SetServedModels(
      const std::vector<std::shared_ptr<const ServedModel>>& models);
  // Counts a model version that failed to load.
  void CountLoadFailure(const std::string& model);
  // Ports the endpoint listens on (empty without an endpoint).
  std::vector<int> ports() const;
  // The exposition text, as a scrape would return it.
  std::string Text() const;

 private:
  Metrics() = default;
  ModelMetrics* MakeChildren(const std::string& model_label,
                             const ServedModel* served);

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> pool_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* queue_ = nullptr;
  prometheus::Family<prometheus::Histogram>* compute_ = nullptr;
  prometheus::Family<prometheus::Histogram>* batch_rows_ = nullptr;
  prometheus::Family<prometheus::Counter>* passes_ = nullptr;
  prometheus::Family<prometheus::Counter>* stream_messages_ = nullptr;
  prometheus::Family<prometheus::Histogram>* adaptive_samples_ = nullptr;
  prometheus::Family<prometheus::Histogram>* std_ = nullptr;
  prometheus::Family<prometheus::Histogram>* entropy_ = nullptr;
  prometheus::Family<prometheus::Histogram>* mi_ = nullptr;
  prometheus::Family<prometheus::Counter>* input_values_ = nullptr;
  prometheus::Family<prometheus::Counter>* input_out_of_range_ = nullptr;
  prometheus::Family<prometheus::Gauge>* model_info_ = nullptr;
  prometheus::Gauge* inflight_ = nullptr;
  // mcdrop_retry_attempts_total by endpoint and previous attempts (1, 2, 3,
  // 4 or more).
  static constexpr int kRetryBuckets = 4;
  std::array<std::array<prometheus::Counter*, kRetryBuckets>, kEndpoints>
      retry_attempts_{};
  ModelMetrics* unknown_ = nullptr;

  absl::Mutex mu_;
  std::map<std::pair<std::string, int64_t>, const ModelMetrics*> by_version_
      ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int64_t>, prometheus::Gauge*> info_
      ABSL_GUARDED_BY(mu_);
  prometheus::Family<prometheus::Counter>* load_failures_ = nullptr;
  std::vector<std::unique_ptr<ModelMetrics>> owned_;  // every child set made
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_METRICS_H_
