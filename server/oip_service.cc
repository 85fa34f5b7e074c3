// Copyright 2026 The mcdrop Authors.

#include "server/oip_service.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/oip.h"
#include "server/status_util.h"

namespace mcdrop::server {
namespace {

// Finishes at once with `status`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context,
                               const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// An admission slot (InferenceService::TryAdmit), given back when this goes.
class Admission {
 public:
  explicit Admission(InferenceService* inference) : inference_(inference) {}
  ~Admission() { inference_->Release(); }
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

 private:
  InferenceService* inference_;
};

// What a call needs after the engine finished (kept by the completion).
struct InferState {
  std::unique_ptr<Admission> admission;  // released with the state
  OipCall call;
  std::shared_ptr<const ServedModel> model;
  PredictPlan plan;
  const ModelMetrics* metrics = nullptr;
  FeedbackMonitor* feedback = nullptr;
  absl::Time arrived;
};

}  // namespace

OipBackend::OipBackend(const ModelRegistry* models, Engine* engine,
                       Metrics* metrics, Limits limits,
                       InferenceService* inference)
    : models_(models),
      engine_(engine),
      metrics_(metrics),
      limits_(limits),
      inference_(inference) {}

absl::StatusOr<std::shared_ptr<const ServedModel>> OipBackend::Find(
    const std::string& name, const std::string& version) const {
  int64_t v = 0;
  if (!version.empty() && (!absl::SimpleAtoi(version, &v) || v < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model version \"", absl::CHexEscape(version.substr(0, 64)),
        "\" is not a positive integer"));
  }
  return models_->Get(name, v);
}

bool OipBackend::ServerReady() const {
  return inference_->ready() && !models_->List().empty();
}

bool OipBackend::ModelReady(const std::string& name,
                            const std::string& version) const {
  return inference_->ready() && Find(name, version).ok();
}

void OipBackend::ServerMetadata(inference::ServerMetadataResponse* response) {
  response->set_name("mcdrop");
  response->set_version("1");
  response->add_extensions("binary_tensor_data");
  response->add_extensions("parameters");
}

absl::Status OipBackend::ModelMetadata(
    const std::string& name, const std::string& version,
    inference::ModelMetadataResponse* response) const {
  auto served = Find(name, version);
  if (!served.ok()) return served.status();
  std::vector<int64_t> versions;
  for (const VersionStatus& v : models_->Versions((*served)->name)) {
    if (v.state == VersionState::kAvailable) versions.push_back(v.version);
  }
  DescribeOipModel(**served, versions, response);
  return absl::OkStatus();
}

void OipBackend::Infer(Endpoint endpoint,
                       const inference::ModelInferRequest* request,
                       inference::ModelInferResponse* response,
                       absl::Time deadline, std::function<bool()> should_stop,
                       std::function<void(absl::Status)> done) {
  auto state = std::make_shared<InferState>();
  state->arrived = absl::Now();
  if (inference_->draining()) {
    metrics_->Unknown()->CountRequest(endpoint, grpc::StatusCode::UNAVAILABLE);
    return done(absl::UnavailableError("the server is shutting down"));
  }
  auto served = Find(request->model_name(), request->model_version());
  if (!served.ok()) {
    metrics_->Unknown()->CountRequest(
        endpoint, ToGrpcStatus(served.status()).error_code());
    return done(served.status());
  }
  state->model = *served;
  state->metrics = metrics_->ForModel(*state->model);
  state->feedback = inference_->feedback();
  auto refuse = [&](const absl::Status& status) {
    const grpc::StatusCode code = ToGrpcStatus(status).error_code();
    state->metrics->CountRequest(endpoint, code);
    if (code == grpc::StatusCode::INVALID_ARGUMENT) {
      spdlog::warn("ModelInfer {}: {}", CodeName(code),
                   std::string(status.message()));
    }
    done(status);
  };
  {
    auto translated = TranslateInferRequest(*request, state->model->model);
    if (!translated.ok()) return refuse(translated.status());
    state->call = *std::move(translated);
  }
  PredictOptions& opt = state->plan.options;
  if (absl::Status s = ValidatePredictRequest(
          state->call.predict, state->model->model, limits_, &state->plan);
      !s.ok()) {
    return refuse(s);
  }
  if (absl::Status s = SettleConformalOutputs(state->model->model, state->plan,
                                              &state->call);
      !s.ok()) {
    return refuse(s);
  }
  if (!inference_->TryAdmit()) {
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat("the server is at its limit of ", limits_.max_inflight,
                     " requests in flight; retry later")));
  }
  state->admission = std::make_unique<Admission>(inference_);
  state->feedback->Prepare(*state->model, &state->plan);
  state->metrics->ObserveInputs(state->model->model,
                                state->call.predict.inputs());
  opt.deadline = std::min(deadline, state->arrived + state->call.timeout);
  opt.should_stop = std::move(should_stop);
  std::shared_ptr<const Model> pinned(state->model, &state->model->model);
  const int q = state->model->model.input_size();
  RunPlan(*engine_, std::move(pinned),
          InputMatrix(state->call.predict.inputs().data(), state->plan.rows, q),
          state->plan, /*rounds=*/false,
          [state, request, response, endpoint, done = std::move(done)](
              absl::StatusOr<AdaptivePrediction> p) mutable {
            absl::Status status = p.status();
            if (p.ok()) {
              // On an engine thread: nothing may escape (an allocation that
              // fails here answers INTERNAL instead of ending the server).
              try {
                FillInferResponse(*request, state->call, *state->model,
                                  state->plan, *p, response);
                const std::string id =
                    state->feedback->Record(*state->model, state->plan, *p);
                if (!id.empty()) {
                  (*response->mutable_parameters())["prediction_id"]
                      .set_string_param(id);
                }
                state->metrics->Observe(*p, state->plan.adaptive.has_value());
              } catch (const std::exception& e) {
                status = absl::InternalError(
                    absl::StrCat("the answer could not be built: ", e.what()));
              }
            } else {
              status = DeadlineIfPassed(std::move(status),
                                        state->plan.options.deadline);
            }
            state->metrics->CountRequest(endpoint,
                                         ToGrpcStatus(status).error_code());
            state->metrics->ObserveDuration(
                endpoint, absl::ToDoubleSeconds(absl::Now() - state->arrived));
            state->admission.reset();
            done(status);
          });
}

grpc::ServerUnaryReactor* OipService::ServerLive(
    grpc::CallbackServerContext* context, const inference::ServerLiveRequest*,
    inference::ServerLiveResponse* response) {
  response->set_live(true);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerReady(
    grpc::CallbackServerContext* context, const inference::ServerReadyRequest*,
    inference::ServerReadyResponse* response) {
  response->set_ready(backend_->ServerReady());
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelReady(
    grpc::CallbackServerContext* context,
    const inference::ModelReadyRequest* request,
    inference::ModelReadyResponse* response) {
  if (absl::Status auth = backend_->inference().Authenticate(context);
      !auth.ok()) {
    return Done(context, auth);
  }
  response->set_ready(
      backend_->ModelReady(request->name(), request->version()));
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerMetadata(
    grpc::CallbackServerContext* context,
    const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* response) {
  OipBackend::ServerMetadata(response);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelMetadata(
    grpc::CallbackServerContext* context,
    const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  absl::Status status = backend_->inference().Authenticate(context);
  if (status.ok()) {
    status =
        backend_->ModelMetadata(request->name(), request->version(), response);
  }
  return Done(context, status);
}

grpc::ServerUnaryReactor* OipService::ModelInfer(
    grpc::CallbackServerContext* context,
    const inference::ModelInferRequest* request,
    inference::ModelInferResponse* response) {
  backend_->inference().CountRetry(context, Endpoint::kGrpcOip);
  if (absl::Status auth = backend_->inference().Authenticate(context);
      !auth.ok()) {
    backend_->metrics().Unknown()->CountRequest(
        Endpoint::kGrpcOip, ToGrpcStatus(auth).error_code());
    return Done(context, auth);
  }
  const auto deadline = context->deadline();
  const absl::Time until =
      deadline == std::chrono::system_clock::time_point::max()
          ? absl::InfiniteFuture()
          : absl::FromChrono(deadline);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The context, request and response live until Finish, which `done` calls.
  backend_->Infer(
      Endpoint::kGrpcOip, request, response, until,
      [context] { return context->IsCancelled(); },
      [reactor](absl::Status status) {
        reactor->Finish(ToGrpcStatus(status));
      });
  return reactor;
}

}  // namespace mcdrop::server
