// Copyright 2026 The mcdrop Authors.

#include "server/oip_service.h"

#include <memory>
#include <utility>

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

}  // namespace

OipService::OipService(const ModelRegistry* models, Engine* engine,
                       Metrics* metrics, Limits limits,
                       InferenceService* inference)
    : models_(models),
      engine_(engine),
      metrics_(metrics),
      limits_(limits),
      inference_(inference) {}

absl::StatusOr<std::shared_ptr<const ServedModel>> OipService::Find(
    const std::string& name, const std::string& version) const {
  int64_t v = 0;
  if (!version.empty() && (!absl::SimpleAtoi(version, &v) || v < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model version \"", version, "\" is not a positive integer"));
  }
  return models_->Get(name, v);
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
  response->set_ready(!inference_->draining() && !models_->List().empty());
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelReady(
    grpc::CallbackServerContext* context,
    const inference::ModelReadyRequest* request,
    inference::ModelReadyResponse* response) {
  if (absl::Status auth = inference_->Authenticate(context); !auth.ok()) {
    return Done(context, auth);
  }
  response->set_ready(!inference_->draining() &&
                      Find(request->name(), request->version()).ok());
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerMetadata(
    grpc::CallbackServerContext* context,
    const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* response) {
  response->set_name("mcdrop");
  response->set_version("1");
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelMetadata(
    grpc::CallbackServerContext* context,
    const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  if (absl::Status auth = inference_->Authenticate(context); !auth.ok()) {
    return Done(context, auth);
  }
  auto served = Find(request->name(), request->version());
  if (!served.ok()) return Done(context, served.status());
  std::vector<int64_t> versions;
  for (const VersionStatus& v : models_->Versions((*served)->name)) {
    if (v.state == VersionState::kAvailable) versions.push_back(v.version);
  }
  DescribeOipModel(**served, versions, response);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelInfer(
    grpc::CallbackServerContext* context,
    const inference::ModelInferRequest* request,
    inference::ModelInferResponse* response) {
  const absl::Time arrived = absl::Now();
  if (absl::Status auth = inference_->Authenticate(context); !auth.ok()) {
    metrics_->Unknown()->CountRequest(ToGrpcStatus(auth).error_code());
    return Done(context, auth);
  }
  if (inference_->draining()) {
    return Done(context, absl::UnavailableError("the server is shutting down"));
  }
  auto served = Find(request->model_name(), request->model_version());
  if (!served.ok()) {
    metrics_->Unknown()->CountRequest(
        ToGrpcStatus(served.status()).error_code());
    return Done(context, served.status());
  }
  const ModelMetrics* mm = metrics_->ForModel(**served);
  auto refuse = [&](const absl::Status& status) {
    mm->CountRequest(ToGrpcStatus(status).error_code());
    return Done(context, status);
  };
  auto call = std::make_shared<OipCall>();
  {
    auto translated = TranslateInferRequest(*request, (*served)->model);
    if (!translated.ok()) return refuse(translated.status());
    *call = *std::move(translated);
  }
  int rows = 0;
  PredictOptions opt;
  if (absl::Status s = ValidatePredictRequest(call->predict, (*served)->model,
                                              limits_, &rows, &opt);
      !s.ok()) {
    return refuse(s);
  }
  if (!inference_->TryAdmit()) {
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat("the server is at its limit of ", limits_.max_inflight,
                     " requests in flight; retry later")));
  }
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    opt.deadline = absl::FromChrono(deadline);
  }
  // The context lives until Finish, which the completion calls.
  opt.should_stop = [context] { return context->IsCancelled(); };
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<const ServedModel> model = *served;
  std::shared_ptr<const Model> pinned(model, &model->model);
  const int q = model->model.input_size();
  InferenceService* inference = inference_;
  engine_->PredictAsync(
      std::move(pinned), InputMatrix(call->predict.inputs().data(), rows, q),
      opt,
      [reactor, call, request, response, model, opt, mm, arrived,
       inference](absl::StatusOr<Prediction> p) {
        if (p.ok()) {
          FillInferResponse(*request, *call, *model, opt, *p, response);
          mm->Observe(*p);
        }
        const grpc::Status g = ToGrpcStatus(p.status());
        mm->CountRequest(g.error_code());
        mm->duration->Observe(absl::ToDoubleSeconds(absl::Now() - arrived));
        inference->Release();
        reactor->Finish(g);
      });
  return reactor;
}

}  // namespace mcdrop::server
