// Copyright 2026 The mcdrop Authors.

#include "server/service.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <memory>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/intervals.h"
#include "server/status_util.h"

namespace mcdrop::server {
namespace {

using mcdrop::v1::PredictRequest;
using mcdrop::v1::PredictResponse;

// A unary reactor that records cancellation in a flag the engine can read
// even after the call is gone.
class PredictReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit PredictReactor(std::shared_ptr<std::atomic<bool>> cancelled)
      : cancelled_(std::move(cancelled)) {}
  void OnCancel() override { cancelled_->store(true); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<std::atomic<bool>> cancelled_;
};

class SimpleReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override { delete this; }
};

uint64_t FreshSeed() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t s;
  do {
    s = rng();
  } while (s == 0);
  return s;
}

// Checks a request against the model and the limits; on success sets the
// batch shape and the engine options.
absl::Status CheckRequest(const PredictRequest& req, const Model& model,
                          const Limits& limits, int* rows,
                          PredictOptions* opt) {
  const int q = model.input_size();
  int64_t b;
  if (req.shape_size() == 1) {
    b = 1;
    if (req.shape(0) != q) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape [", req.shape(0), "] does not match the model's ",
                       q, " inputs"));
    }
  } else if (req.shape_size() == 2) {
    b = req.shape(0);
    if (req.shape(1) != q) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape [", req.shape(0), ", ", req.shape(1), "]: the model takes ", q,
          " values per row, not ", req.shape(1)));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("shape must be [rows, ", q, "] (or [", q,
                     "] for one row); got ", req.shape_size(), " dimensions"));
  }
  if (b < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch is empty: shape [", b, ", ", q, "] has no rows"));
  }
  if (b > limits.max_batch_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(b, " rows exceed the server's limit of ",
                     limits.max_batch_rows, " rows per request"));
  }
  if (req.inputs_size() != b * q) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape [", b, ", ", q, "] needs ", b * q,
                     " input values, got ", req.inputs_size()));
  }
  const bool mc = req.mode() == mcdrop::v1::MONTE_CARLO;
  if (req.mode() != mcdrop::v1::MONTE_CARLO &&
      req.mode() != mcdrop::v1::DETERMINISTIC) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown mode ", req.mode()));
  }
  int t = req.samples();
  if (t < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("samples must be >= 0 (0: the model's default), got ", t));
  }
  if (t == 0)
    t = model.spec().default_samples > 0 ? model.spec().default_samples
                                         : limits.default_samples;
  if (mc && t > limits.max_samples) {
    return absl::InvalidArgumentError(absl::StrCat(
        "samples ", t, " exceed the server's limit of ", limits.max_samples));
  }
  if (req.interval_levels_size() > 0) {
    if (model.task() != Task::kRegression) {
      return absl::InvalidArgumentError(
          "interval_levels apply to regression models only");
    }
    if (req.interval_levels_size() > 16) {
      return absl::InvalidArgumentError(
          "at most 16 interval levels per request");
    }
    for (double level : req.interval_levels()) {
      if (!(level > 0 && level < 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("interval level ", level, " is not in (0, 1)"));
      }
    }
  }
  const int64_t keep = mc ? t : 1;
  if ((req.return_samples() || req.interval_levels_size() > 0) &&
      keep * b * model.output_size() * 4 > limits.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "T x rows x outputs = ", keep * b * model.output_size(),
        " samples exceed what the server keeps for one request "
        "(max_message_bytes ",
        limits.max_message_bytes, "); send fewer rows or a smaller T"));
  }
  *rows = static_cast<int>(b);
  opt->mode = mc ? PredictMode::kMonteCarlo : PredictMode::kDeterministic;
  opt->samples = t;
  opt->seed = req.seed() != 0 ? req.seed() : FreshSeed();
  opt->include_noise = !req.exclude_noise();
  opt->return_samples = req.return_samples() || req.interval_levels_size() > 0;
  return absl::OkStatus();
}

void FillResponse(const PredictRequest& req, const ServedModel& served,
                  const PredictOptions& opt, const Prediction& p,
                  PredictResponse* resp) {
  resp->set_model(served.name);
  resp->set_version(served.version);
  const bool regression = p.task == Task::kRegression;
  resp->set_task(regression ? mcdrop::v1::REGRESSION
                            : mcdrop::v1::CLASSIFICATION);
  resp->set_samples(p.samples);
  resp->set_seed(opt.seed);
  resp->set_queue_seconds(p.queue_seconds);
  resp->set_compute_seconds(p.run_seconds);
  const double noise =
      regression && opt.include_noise ? 1.0 / served.model.tau() : 0.0;
  std::vector<double> scratch;
  for (int r = 0; r < p.rows; ++r) {
    auto* row = resp->add_rows();
    if (regression) {
      for (int d = 0; d < p.outputs; ++d) {
        auto* o = row->add_outputs();
        o->set_mean(p.Mean(r, d));
        o->set_variance(p.Variance(r, d));
        o->set_std(std::sqrt(p.Variance(r, d)));
        o->set_model_variance(p.model_variance[r * p.outputs + d]);
        for (double level : req.interval_levels()) {
          const IntervalBounds b = PredictiveInterval(
              p.sample_values.data() + static_cast<int64_t>(r) * p.outputs + d,
              static_cast<int64_t>(p.rows) * p.outputs, p.samples, noise, level,
              &scratch);
          auto* iv = o->add_intervals();
          iv->set_level(level);
          iv->set_lower(b.lower);
          iv->set_upper(b.upper);
        }
      }
    } else {
      auto* c = row->mutable_classification();
      for (int d = 0; d < p.outputs; ++d) c->add_probabilities(p.Mean(r, d));
      c->set_predicted_class(p.predicted_class[r]);
      c->set_entropy(p.entropy[r]);
      c->set_mutual_information(p.mutual_information[r]);
      c->set_variation_ratio(p.variation_ratio[r]);
    }
  }
  if (req.return_samples()) {
    resp->add_sample_shape(p.samples);
    resp->add_sample_shape(p.rows);
    resp->add_sample_shape(p.outputs);
    resp->mutable_sample_values()->Add(p.sample_values.begin(),
                                       p.sample_values.end());
  }
}

}  // namespace

void DescribeModel(const ServedModel& served, bool is_default,
                   mcdrop::v1::ModelMetadata* out) {
  const Model& m = served.model;
  out->set_name(served.name);
  out->set_version(served.version);
  out->set_task(m.task() == Task::kRegression ? mcdrop::v1::REGRESSION
                                              : mcdrop::v1::CLASSIFICATION);
  out->set_input_size(m.input_size());
  out->set_output_size(m.output_size());
  for (int w : m.widths()) out->add_layer_sizes(w);
  out->set_activation(std::string(ActivationName(m.activation())));
  for (const DenseLayer& l : m.layers()) out->add_dropout(l.drop_rate);
  if (m.task() == Task::kRegression) out->set_tau(m.tau());
  out->set_default_samples(m.spec().default_samples);
  out->set_description(m.spec().description);
  out->set_load_time(
      absl::ToDoubleSeconds(served.load_time - absl::UnixEpoch()));
  out->set_is_default(is_default);
  out->set_source(served.source);
  for (float v : m.spec().input_mean) out->add_input_mean(v);
  for (float v : m.spec().input_std) out->add_input_std(v);
}

void DescribeVersions(const ModelRegistry& registry, const std::string& name,
                      mcdrop::v1::ModelMetadata* out) {
  for (const VersionStatus& v : registry.Versions(name)) {
    auto* s = out->add_versions();
    s->set_version(v.version);
    switch (v.state) {
      case VersionState::kLoading:
        s->set_state(mcdrop::v1::ModelVersionStatus::LOADING);
        break;
      case VersionState::kAvailable:
        s->set_state(mcdrop::v1::ModelVersionStatus::AVAILABLE);
        break;
      case VersionState::kFailed:
        s->set_state(mcdrop::v1::ModelVersionStatus::FAILED);
        break;
    }
    s->set_reason(v.reason);
    if (v.state == VersionState::kAvailable) {
      s->set_load_time(absl::ToDoubleSeconds(v.load_time - absl::UnixEpoch()));
    }
    s->set_source(v.source);
  }
}

InferenceService::InferenceService(const ModelRegistry* models, Engine* engine,
                                   Metrics* metrics, Limits limits)
    : models_(models), engine_(engine), metrics_(metrics), limits_(limits) {}

grpc::ServerUnaryReactor* InferenceService::Predict(
    grpc::CallbackServerContext* context, const PredictRequest* request,
    PredictResponse* response) {
  const absl::Time arrived = absl::Now();
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* reactor = new PredictReactor(cancelled);

  // Refusals that never reach the engine.
  auto refuse = [&](const ModelMetrics* mm, const absl::Status& status) {
    const grpc::Status g = ToGrpcStatus(status);
    mm->CountRequest(g.error_code());
    if (g.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        g.error_code() != grpc::StatusCode::UNAVAILABLE) {
      spdlog::warn("Predict {}: {}", CodeName(g.error_code()),
                   std::string(status.message()));
    }
    reactor->Finish(g);
    return reactor;
  };
  if (draining_.load()) {
    return refuse(metrics_->Unknown(),
                  absl::UnavailableError("the server is shutting down"));
  }
  auto served = models_->Get(request->model(), request->version());
  if (!served.ok()) return refuse(metrics_->Unknown(), served.status());
  const ModelMetrics* mm = metrics_->ForModel(**served);
  if (inflight_.fetch_add(1) >= limits_.max_inflight) {
    inflight_.fetch_sub(1);
    return refuse(mm,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "the server is at its limit of ", limits_.max_inflight,
                      " requests in flight; retry later")));
  }
  metrics_->inflight().Increment();
  auto release = [this] {
    inflight_.fetch_sub(1);
    metrics_->inflight().Decrement();
  };

  int rows = 0;
  PredictOptions opt;
  absl::Status checked =
      CheckRequest(*request, (*served)->model, limits_, &rows, &opt);
  if (!checked.ok()) {
    release();
    return refuse(mm, checked);
  }
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    opt.deadline = absl::FromChrono(deadline);
  }
  opt.should_stop = [cancelled] {
    return cancelled->load(std::memory_order_relaxed);
  };

  std::shared_ptr<const ServedModel> model = *served;
  const Model& m = model->model;
  const int q = m.input_size();
  engine_->PredictAsync(
      m, InputMatrix(request->inputs().data(), rows, q), opt,
      [this, reactor, request, response, model, opt, mm, arrived, release,
       deadline](absl::StatusOr<Prediction> p) {
        absl::Status status = p.status();
        if (status.ok()) {
          FillResponse(*request, *model, opt, *p, response);
          mm->Observe(*p);
        } else if (absl::IsCancelled(status) &&
                   std::chrono::system_clock::now() >= deadline) {
          status = absl::DeadlineExceededError(
              "the deadline passed during the computation");
        }
        const grpc::Status g = ToGrpcStatus(status);
        mm->CountRequest(g.error_code());
        mm->duration->Observe(absl::ToDoubleSeconds(absl::Now() - arrived));
        if (!status.ok() && !absl::IsCancelled(status) &&
            !absl::IsDeadlineExceeded(status)) {
          spdlog::warn("Predict {}: {}", CodeName(g.error_code()),
                       std::string(status.message()));
        }
        release();
        reactor->Finish(g);
      });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelMetadata(
    grpc::CallbackServerContext*,
    const mcdrop::v1::GetModelMetadataRequest* request,
    mcdrop::v1::ModelMetadata* response) {
  auto* reactor = new SimpleReactor();
  auto served = models_->Get(request->model(), request->version());
  if (!served.ok()) {
    // A model none of whose versions is available is still described, with
    // the states and reasons of its versions.
    const std::string name =
        request->model().empty() ? models_->default_name() : request->model();
    if (request->version() == 0 && !models_->Versions(name).empty()) {
      response->set_name(name);
      DescribeVersions(*models_, name, response);
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    reactor->Finish(ToGrpcStatus(served.status()));
    return reactor;
  }
  DescribeModel(**served, (*served)->name == models_->default_name(), response);
  DescribeVersions(*models_, (*served)->name, response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::ListModels(
    grpc::CallbackServerContext*, const mcdrop::v1::ListModelsRequest*,
    mcdrop::v1::ListModelsResponse* response) {
  auto* reactor = new SimpleReactor();
  const std::string default_name = models_->default_name();
  for (const std::string& name : models_->Names()) {
    auto* out = response->add_models();
    auto served = models_->Get(name, 0);
    if (served.ok()) {
      DescribeModel(**served, name == default_name, out);
    } else {
      out->set_name(name);
    }
    DescribeVersions(*models_, name, out);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace mcdrop::server
