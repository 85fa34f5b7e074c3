// Copyright 2026 The mcdrop Authors.

#include "server/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/memory.h"
#include "server/status_util.h"

namespace mcdrop::server {
namespace {

using prometheus::Histogram;

const grpc::StatusCode kCodes[] = {
    grpc::StatusCode::OK,
    grpc::StatusCode::CANCELLED,
    grpc::StatusCode::INVALID_ARGUMENT,
    grpc::StatusCode::DEADLINE_EXCEEDED,
    grpc::StatusCode::NOT_FOUND,
    grpc::StatusCode::RESOURCE_EXHAUSTED,
    grpc::StatusCode::UNAVAILABLE,
    grpc::StatusCode::INTERNAL,
    grpc::StatusCode::UNAUTHENTICATED,
};

// The "protocol" and "api" label values of each Endpoint.
const std::pair<const char*, const char*> kEndpointLabels[kEndpoints] = {
    {"grpc", "mcdrop.v1"},
    {"grpc", "oip"},
    {"http", "oip"},
    {"grpc", "mcdrop.v1.stream"}};

const Histogram::BucketBoundaries kSecondsBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,   0.5,   1,      2.5,   5,    10,    30};
const Histogram::BucketBoundaries kRowsBuckets = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

Histogram::BucketBoundaries Scaled(double scale,
                                   std::initializer_list<double> factors) {
  Histogram::BucketBoundaries b;
  for (double f : factors) b.push_back(scale * f);
  return b;
}

// Thread-pool and memory gauges read at scrape time.
class PoolCollector : public prometheus::Collectable {
 public:
  explicit PoolCollector(const Engine* engine) : engine_(engine) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    auto gauge = [](const char* name, const char* help, double v) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = prometheus::MetricType::Gauge;
      prometheus::ClientMetric m;
      m.gauge.value = v;
      f.metric.push_back(m);
      return f;
    };
    const MemoryUsage memory = ReadMemoryUsage();
    return {
        gauge("mcdrop_threadpool_threads", "Threads in the engine's pool.",
              engine_->threads()),
        gauge("mcdrop_threadpool_busy_threads", "Pool threads computing now.",
              engine_->busy_threads()),
        gauge("mcdrop_threadpool_queued_tasks",
              "Engine tasks waiting for a thread.", engine_->queued_tasks()),
        gauge("process_resident_memory_bytes", "Resident memory size.",
              memory.resident_bytes),
        gauge("mcdrop_heap_in_use_bytes",
              "Bytes the allocator has handed out and not had back: grows "
              "only with what the server keeps (a leak shows here).",
              memory.heap_in_use),
        gauge("mcdrop_heap_held_bytes",
              "Bytes the allocator holds from the system, in use or free.",
              memory.heap_held)};
  }

 private:
  const Engine* engine_;
};

}  // namespace

void ModelMetrics::CountRequest(Endpoint endpoint,
                                grpc::StatusCode code) const {
  const int e = static_cast<int>(endpoint);
  auto it = requests[e].find(code);
  (it == requests[e].end() ? unknown_code[e] : it->second)->Increment();
}

void Metrics::CountRetryAttempt(Endpoint endpoint, int previous) {
  if (previous < 1) return;
  prometheus::Counter* c =
      retry_attempts_[static_cast<int>(endpoint)]
                     [std::min(previous, kRetryBuckets) - 1];
  if (c != nullptr) c->Increment();
}

void ModelMetrics::Observe(const AdaptivePrediction& answer,
                           bool adaptive) const {
  const Prediction& p = answer.prediction;
  queue->Observe(p.queue_seconds);
  compute->Observe(p.run_seconds);
  batch_rows->Observe(p.rows);
  passes->Increment(static_cast<double>(answer.row_passes));
  if (adaptive) {
    for (int t : answer.samples_per_row) adaptive_samples->Observe(t);
  }
  if (p.task == Task::kRegression) {
    for (int r = 0; r < p.rows; ++r) {
      for (int d = 0;
           d < p.outputs && d < static_cast<int>(predictive_std.size()); ++d) {
        predictive_std[d]->Observe(std::sqrt(p.Variance(r, d)));
      }
    }
  } else {
    for (int r = 0; r < p.rows; ++r) {
      entropy->Observe(p.entropy[r]);
      mutual_information->Observe(p.mutual_information[r]);
    }
  }
}

void ModelMetrics::ObserveInputs(const Model& model,
                                 absl::Span<const float> values) const {
  const ModelSpec& spec = model.spec();
  const int64_t n = spec.input_mean.size();
  if (input_values == nullptr || n == 0 || values.empty()) return;
  // Per value, or per channel (images standardised per channel): rows of
  // n standardised groups of `plane` values each.
  const int64_t per_example = model.input_size();
  const int64_t plane = n == per_example ? 1 : per_example / n;
  int64_t out = 0;
  const float* v = values.data();
  for (size_t row = 0; row + per_example <= values.size(); row += per_example) {
    for (int64_t k = 0; k < n; ++k) {
      const float mean = spec.input_mean[k];
      const float bound = static_cast<float>(kDriftZ) * spec.input_std[k];
      for (int64_t i = 0; i < plane; ++i, ++v)
        out += std::abs(*v - mean) > bound;
    }
  }
  input_values->Increment(static_cast<double>(values.size()));
  input_values_out_of_range->Increment(static_cast<double>(out));
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(
    const std::string& address, const Engine* engine) {
  std::unique_ptr<Metrics> m(new Metrics());
  try {
    m->registry_ = std::make_shared<prometheus::Registry>();
    auto& r = *m->registry_;
    m->requests_ =
        &prometheus::BuildCounter()
             .Name("mcdrop_requests_total")
             .Help(
                 "Inference requests (mcdrop.v1 Predict, OIP ModelInfer) by "
                 "model, protocol, API and gRPC status code.")
             .Register(r);
    m->duration_ =
        &prometheus::BuildHistogram()
             .Name("mcdrop_request_duration_seconds")
             .Help(
                 "Server-side inference latency, from arrival to answer, by "
                 "model, protocol and API.")
             .Register(r);
    m->queue_ = &prometheus::BuildHistogram()
                     .Name("mcdrop_request_queue_seconds")
                     .Help("Time a Predict waited for an engine thread.")
                     .Register(r);
    m->compute_ = &prometheus::BuildHistogram()
                       .Name("mcdrop_request_compute_seconds")
                       .Help("Time the engine computed a Predict.")
                       .Register(r);
    m->batch_rows_ = &prometheus::BuildHistogram()
                          .Name("mcdrop_request_batch_rows")
                          .Help("Input rows per successful Predict.")
                          .Register(r);
    m->passes_ = &prometheus::BuildCounter()
                      .Name("mcdrop_stochastic_passes_total")
                      .Help("Forward passes computed (rows x T).")
                      .Register(r);
    m->stream_messages_ =
        &prometheus::BuildCounter()
             .Name("mcdrop_stream_messages_total")
             .Help(
                 "Running-estimate messages sent by PredictStream (each call's "
                 "final answer is counted in mcdrop_requests_total).")
             .Register(r);
    m->input_values_ =
        &prometheus::BuildCounter()
             .Name("mcdrop_input_values_total")
             .Help(
                 "Input values of admitted requests, for models with an "
                 "input standardisation.")
             .Register(r);
    m->input_out_of_range_ =
        &prometheus::BuildCounter()
             .Name("mcdrop_input_values_out_of_range_total")
             .Help(
                 "Input values more than 4 training standard deviations from "
                 "the training mean (input drift).")
             .Register(r);
    m->adaptive_samples_ =
        &prometheus::BuildHistogram()
             .Name("mcdrop_adaptive_samples")
             .Help(
                 "Passes (T) each row used, for requests with a "
                 "standard-error target.")
             .Register(r);
    m->std_ = &prometheus::BuildHistogram()
                   .Name("mcdrop_predictive_std")
                   .Help(
                       "Predictive standard deviation per row and output, in "
                       "output units "
                       "(regression models).")
                   .Register(r);
    m->entropy_ =
        &prometheus::BuildHistogram()
             .Name("mcdrop_predictive_entropy_nats")
             .Help("Predictive entropy per row (classification models).")
             .Register(r);
    m->mi_ =
        &prometheus::BuildHistogram()
             .Name("mcdrop_mutual_information_nats")
             .Help("Mutual information (BALD) per row (classification models).")
             .Register(r);
    m->model_info_ =
        &prometheus::BuildGauge()
             .Name("mcdrop_model_info")
             .Help(
                 "1 for each served model, labelled with its version and task.")
             .Register(r);
    m->load_failures_ =
        &prometheus::BuildCounter()
             .Name("mcdrop_model_load_failures_total")
             .Help("Model versions that failed to load, by model.")
             .Register(r);
    m->inflight_ = &prometheus::BuildGauge()
                        .Name("mcdrop_inflight_requests")
                        .Help("Predict requests admitted and not yet answered.")
                        .Register(r)
                        .Add({});
    auto& retries =
        prometheus::BuildCounter()
            .Name("mcdrop_retry_attempts_total")
            .Help(
                "gRPC calls that arrived as a retry of an earlier attempt "
                "(the client's retry policy, gRFC A6), by the attempts "
                "before it (previous_attempts=\"1\" counts retried calls).")
            .Register(r);
    for (int e = 0; e < kEndpoints; ++e) {
      if (kEndpointLabels[e].first != std::string("grpc")) continue;
      for (int b = 0; b < kRetryBuckets; ++b) {
        m->retry_attempts_[e][b] = &retries.Add(
            {{"protocol", kEndpointLabels[e].first},
             {"api", kEndpointLabels[e].second},
             {"previous_attempts", b + 1 < kRetryBuckets
                                       ? absl::StrCat(b + 1)
                                       : absl::StrCat(kRetryBuckets, "+")}});
      }
    }
    m->unknown_ = m->MakeChildren("", nullptr);
    m->pool_collector_ = std::make_shared<PoolCollector>(engine);
    if (!address.empty()) {
      m->exposer_ = std::make_unique<prometheus::Exposer>(address);
      m->exposer_->RegisterCollectable(m->registry_);
      m->exposer_->RegisterCollectable(m->pool_collector_);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(
        "cannot start the metrics endpoint on \"", address, "\": ", e.what()));
  }
  return m;
}

Metrics::~Metrics() = default;

ModelMetrics* Metrics::MakeChildren(const std::string& model_label,
                                    const ServedModel* served) {
  auto mm = std::make_unique<ModelMetrics>();
  // Request counts and latencies are per model name (prometheus-cpp's Add
  // returns the existing child for labels it has seen); what depends on the
  // version's task and shape is per version.
  const prometheus::Labels labels = {{"model", model_label}};
  for (int e = 0; e < kEndpoints; ++e) {
    prometheus::Labels endpoint = labels;
    endpoint["protocol"] = kEndpointLabels[e].first;
    endpoint["api"] = kEndpointLabels[e].second;
    for (grpc::StatusCode code : kCodes) {
      prometheus::Labels l = endpoint;
      l["code"] = CodeName(code);
      mm->requests[e][code] = &requests_->Add(l);
    }
    prometheus::Labels unknown = endpoint;
    unknown["code"] = "UNKNOWN";
    mm->unknown_code[e] = &requests_->Add(unknown);
    mm->duration[e] = &duration_->Add(endpoint, kSecondsBuckets);
  }
  mm->queue = &queue_->Add(labels, kSecondsBuckets);
  mm->compute = &compute_->Add(labels, kSecondsBuckets);
  mm->batch_rows = &batch_rows_->Add(labels, kRowsBuckets);
  mm->passes = &passes_->Add(labels);
  mm->stream_messages = &stream_messages_->Add(labels);
  mm->adaptive_samples = &adaptive_samples_->Add(
      labels, prometheus::Histogram::BucketBoundaries{
                  2, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000});
  const Model* model = served != nullptr ? &served->model : nullptr;
  const prometheus::Labels version_labels = {
      {"model", model_label},
      {"version", served != nullptr ? absl::StrCat(served->version) : ""}};
  if (model != nullptr && model->spec().input_mean.size() > 0) {
    mm->input_values = &input_values_->Add(version_labels);
    mm->input_values_out_of_range = &input_out_of_range_->Add(version_labels);
  }
  if (model != nullptr && model->task() == Task::kRegression) {
    // Buckets from the model's output scale (its training-target std when
    // the file has one) and its noise floor sqrt(1/tau).
    const ModelSpec& spec = model->spec();
    constexpr int kMaxOutputs = 16;  // bound the label cardinality
    for (int d = 0; d < model->output_size() && d < kMaxOutputs; ++d) {
      const double scale = spec.output_std.size() ? spec.output_std[d] : 1.0;
      prometheus::Labels output_labels = version_labels;
      output_labels["output"] = absl::StrCat(d);
      mm->predictive_std.push_back(&std_->Add(
          output_labels, Scaled(scale, {0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3,
                                        0.5, 0.75, 1, 1.5, 2, 5})));
    }
  } else if (model != nullptr) {
    const double max_h = std::log(static_cast<double>(model->output_size()));
    mm->entropy = &entropy_->Add(
        version_labels, Scaled(max_h, {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4,
                                       0.5, 0.6, 0.7, 0.8, 0.9, 1.0}));
    mm->mutual_information = &mi_->Add(
        version_labels, Scaled(max_h, {0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                       0.1, 0.2, 0.3, 0.5, 1.0}));
  }
  ModelMetrics* raw = mm.get();
  owned_.push_back(std::move(mm));
  return raw;
}

const ModelMetrics* Metrics::ForModel(const ServedModel& model) {
  absl::MutexLock lock(&mu_);
  const auto key = std::make_pair(model.name, model.version);
  auto it = by_version_.find(key);
  if (it != by_version_.end()) return it->second;
  // Kept after the version is unloaded: a request still computing on it may
  // hold the children, and a version's series is its history.
  ModelMetrics* mm = MakeChildren(model.name, &model);
  by_version_[key] = mm;
  return mm;
}

void Metrics::SetServedModels(
    const std::vector<std::shared_ptr<const ServedModel>>& models) {
  absl::MutexLock lock(&mu_);
  std::map<std::pair<std::string, int64_t>, prometheus::Gauge*> next;
  for (const auto& m : models) {
    const auto key = std::make_pair(m->name, m->version);
    auto it = info_.find(key);
    if (it != info_.end()) {
      next[key] = it->second;
      info_.erase(it);
    } else {
      prometheus::Gauge& g =
          model_info_->Add({{"model", m->name},
                            {"version", absl::StrCat(m->version)},
                            {"task", std::string(TaskName(m->model.task()))}});
      g.Set(1);
      next[key] = &g;
    }
  }
  for (auto& [key, gauge] : info_) model_info_->Remove(gauge);
  info_ = std::move(next);
}

void Metrics::CountLoadFailure(const std::string& model) {
  load_failures_->Add({{"model", model}}).Increment();
}

std::vector<int> Metrics::ports() const {
  return exposer_ ? exposer_->GetListeningPorts() : std::vector<int>{};
}

std::string Metrics::Text() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& f : pool_collector_->Collect()) families.push_back(std::move(f));
  prometheus::TextSerializer serializer;
  std::ostringstream out;
  serializer.Serialize(out, families);
  return out.str();
}

}  // namespace mcdrop::server
