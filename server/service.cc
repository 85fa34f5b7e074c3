// Copyright 2026 The mcdrop Authors.

#include "server/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/request.h"
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

struct PredictCall {
  PredictRequest request;
  PredictResponse response;
};

// Requests arrive as bytes (raw callback methods) so that a message that is
// not protobuf gets INVALID_ARGUMENT with a reason, not gRPC's bare
// UNIMPLEMENTED.
template <typename Message>
absl::Status ParseMessage(const grpc::ByteBuffer* bytes, Message* out) {
  grpc::ByteBuffer copy(*bytes);  // shares the slices
  const grpc::Status s =
      grpc::SerializationTraits<Message>::Deserialize(&copy, out);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request (", bytes->Length(), " bytes) is not a valid ",
        Message::descriptor()->full_name(), " message"));
  }
  return absl::OkStatus();
}

template <typename Message>
void SerializeMessage(const Message& message, grpc::ByteBuffer* out) {
  bool own_buffer;
  grpc::SerializationTraits<Message>::Serialize(message, out, &own_buffer);
}

class SimpleReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override { delete this; }
};

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
  const Shape shape = m.input_shape();
  out->add_input_shape(shape.c);
  if (!shape.flat()) {
    out->add_input_shape(shape.h);
    out->add_input_shape(shape.w);
  }
  if (m.has_layer_list()) {
    out->set_format(std::string(kModelFormatV2));
    out->set_layers(LayerListJson(m.spec().graph));
  } else {
    out->set_format(std::string(kModelFormat));
    out->set_activation(std::string(ActivationName(m.activation())));
  }
  for (const Stage& s : m.stages()) out->add_dropout(s.drop_rate);
  if (m.task() == Task::kRegression) out->set_tau(m.tau());
  out->set_default_samples(m.spec().default_samples);
  out->set_precision(std::string(PrecisionName(m.precision())));
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

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

InferenceService::InferenceService(const ModelRegistry* models, Engine* engine,
                                   Metrics* metrics, Limits limits,
                                   std::vector<std::string> tokens)
    : models_(models),
      engine_(engine),
      metrics_(metrics),
      limits_(limits),
      tokens_(std::move(tokens)) {}

bool InferenceService::TryAdmit() {
  if (inflight_.fetch_add(1) >= limits_.max_inflight) {
    inflight_.fetch_sub(1);
    return false;
  }
  metrics_->inflight().Increment();
  return true;
}

void InferenceService::Release() {
  inflight_.fetch_sub(1);
  metrics_->inflight().Decrement();
}

absl::Status InferenceService::Authenticate(
    const grpc::CallbackServerContext* context) const {
  if (tokens_.empty()) return absl::OkStatus();
  const auto& md = context->client_metadata();
  const auto it = md.find("authorization");
  if (it == md.end()) return CheckAuthorization(absl::nullopt);
  return CheckAuthorization(
      absl::string_view(it->second.data(), it->second.size()));
}

absl::Status InferenceService::CheckAuthorization(
    absl::optional<absl::string_view> value) const {
  if (tokens_.empty()) return absl::OkStatus();
  if (!value.has_value()) {
    return absl::UnauthenticatedError(
        "this server requires \"authorization: Bearer <token>\"");
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (value->size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value->substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization must be \"Bearer <token>\"");
  }
  const absl::string_view presented = value->substr(kScheme.size());
  // Every token is compared, whatever matched, so the time taken does not
  // tell which one (or how much of one) matched.
  bool ok = false;
  for (const std::string& t : tokens_) ok |= ConstantTimeEquals(presented, t);
  if (!ok) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* InferenceService::Predict(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  const absl::Time arrived = absl::Now();
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* reactor = new PredictReactor(cancelled);
  // The request and response live until the engine's completion has run.
  auto call = std::make_shared<PredictCall>();
  const PredictRequest* request = &call->request;

  // Refusals that never reach the engine.
  auto refuse = [&](const ModelMetrics* mm, const absl::Status& status) {
    const grpc::Status g = ToGrpcStatus(status);
    mm->CountRequest(Endpoint::kGrpcV1, g.error_code());
    // Refusals an abusive client can cause at will are counted, not logged.
    if (g.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        g.error_code() != grpc::StatusCode::UNAVAILABLE &&
        g.error_code() != grpc::StatusCode::UNAUTHENTICATED) {
      spdlog::warn("Predict {}: {}", CodeName(g.error_code()),
                   std::string(status.message()));
    }
    reactor->Finish(g);
    return reactor;
  };
  if (absl::Status auth = Authenticate(context); !auth.ok()) {
    return refuse(metrics_->Unknown(), auth);
  }
  if (absl::Status parsed = ParseMessage(raw_request, &call->request);
      !parsed.ok()) {
    return refuse(metrics_->Unknown(), parsed);
  }
  if (draining_.load()) {
    return refuse(metrics_->Unknown(),
                  absl::UnavailableError("the server is shutting down"));
  }
  auto served = models_->Get(request->model(), request->version());
  if (!served.ok()) return refuse(metrics_->Unknown(), served.status());
  const ModelMetrics* mm = metrics_->ForModel(**served);
  if (!TryAdmit()) {
    return refuse(mm,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "the server is at its limit of ", limits_.max_inflight,
                      " requests in flight; retry later")));
  }
  auto release = [this] { Release(); };

  int rows = 0;
  PredictOptions opt;
  absl::Status checked =
      ValidatePredictRequest(*request, (*served)->model, limits_, &rows, &opt);
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
  const int q = model->model.input_size();
  // The engine's handle on the model keeps the whole version alive.
  std::shared_ptr<const Model> pinned(model, &model->model);
  engine_->PredictAsync(
      std::move(pinned), InputMatrix(request->inputs().data(), rows, q), opt,
      [reactor, call, raw_response, model, opt, mm, arrived, release,
       deadline](absl::StatusOr<Prediction> p) {
        absl::Status status = p.status();
        if (status.ok()) {
          FillPredictResponse(call->request, *model, opt, *p, &call->response);
          mm->Observe(*p);
          SerializeMessage(call->response, raw_response);
        } else if (absl::IsCancelled(status) &&
                   std::chrono::system_clock::now() >= deadline) {
          status = absl::DeadlineExceededError(
              "the deadline passed during the computation");
        }
        const grpc::Status g = ToGrpcStatus(status);
        mm->CountRequest(Endpoint::kGrpcV1, g.error_code());
        mm->ObserveDuration(Endpoint::kGrpcV1,
                            absl::ToDoubleSeconds(absl::Now() - arrived));
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
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  auto* reactor = new SimpleReactor();
  mcdrop::v1::GetModelMetadataRequest request;
  mcdrop::v1::ModelMetadata response;
  absl::Status status = Authenticate(context);
  if (status.ok()) status = ParseMessage(raw_request, &request);
  if (status.ok()) status = Metadata(request, &response);
  if (status.ok()) SerializeMessage(response, raw_response);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status InferenceService::Metadata(
    const mcdrop::v1::GetModelMetadataRequest& request,
    mcdrop::v1::ModelMetadata* response) const {
  auto served = models_->Get(request.model(), request.version());
  if (!served.ok()) {
    // A model none of whose versions is available is still described, with
    // the states and reasons of its versions.
    const std::string name =
        request.model().empty() ? models_->default_name() : request.model();
    if (request.version() == 0 && !models_->Versions(name).empty()) {
      response->set_name(name);
      DescribeVersions(*models_, name, response);
      return absl::OkStatus();
    }
    return served.status();
  }
  DescribeModel(**served, (*served)->name == models_->default_name(), response);
  DescribeVersions(*models_, (*served)->name, response);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* InferenceService::ListModels(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  auto* reactor = new SimpleReactor();
  mcdrop::v1::ListModelsRequest request;
  mcdrop::v1::ListModelsResponse response;
  absl::Status status = Authenticate(context);
  if (status.ok()) status = ParseMessage(raw_request, &request);
  if (status.ok()) {
    AllModels(&response);
    SerializeMessage(response, raw_response);
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

void InferenceService::AllModels(
    mcdrop::v1::ListModelsResponse* response) const {
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
}

}  // namespace mcdrop::server
