// Copyright 2026 The mcdrop Authors.
//
// The Open Inference Protocol (KServe V2) on mcdrop's registry, engine,
// limits, tokens and metrics. OipBackend holds the calls without their
// transport; OipService puts them on gRPC's callback API
// (inference.GRPCInferenceService, on the same port as mcdrop.v1) and
// server/oip_http.h on HTTP/REST.

#ifndef MCDROP_SERVER_OIP_SERVICE_H_
#define MCDROP_SERVER_OIP_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "inference/open_inference_grpc.grpc.pb.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request.h"
#include "server/service.h"

namespace mcdrop::server {

class OipBackend {
 public:
  // All must outlive the backend; `inference` provides admission, draining
  // and authentication shared with mcdrop.v1.
  OipBackend(const ModelRegistry* models, Engine* engine, Metrics* metrics,
             Limits limits, InferenceService* inference);

  // Live: always. Ready: not draining and serving at least one model.
  bool ServerReady() const;
  // Ready and the (name, version) pair names an available model version
  // (an empty version: the newest).
  bool ModelReady(const std::string& name, const std::string& version) const;
  static void ServerMetadata(inference::ServerMetadataResponse* response);
  // NOT_FOUND for an unknown model or version; INVALID_ARGUMENT for a
  // version that is not a positive integer.
  absl::Status ModelMetadata(const std::string& name,
                             const std::string& version,
                             inference::ModelMetadataResponse* response) const;

  // Runs `request` (already authenticated by the transport) on the engine
  // and calls `done` exactly once, possibly before Infer returns, with OK
  // and `response` filled, or the reason. `request` and `response` must live
  // until `done` has run. The request's deadline is the earlier of
  // `deadline` and its "timeout" parameter; `should_stop` (may be empty)
  // says the caller has gone. Counted in the metrics under `endpoint`.
  void Infer(Endpoint endpoint, const inference::ModelInferRequest* request,
             inference::ModelInferResponse* response, absl::Time deadline,
             std::function<bool()> should_stop,
             std::function<void(absl::Status)> done);

  // The model a (name, version string) pair selects.
  absl::StatusOr<std::shared_ptr<const ServedModel>> Find(
      const std::string& name, const std::string& version) const;

  const InferenceService& inference() const { return *inference_; }
  Metrics& metrics() const { return *metrics_; }
  const Limits& limits() const { return limits_; }

 private:
  const ModelRegistry* models_;
  Engine* engine_;
  Metrics* metrics_;
  const Limits limits_;
  InferenceService* inference_;
};

// inference.GRPCInferenceService. ServerLive, ServerReady and
// ServerMetadata are open (probes use them); the model calls need a bearer
// token when the server has tokens.
class OipService final
    : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit OipService(OipBackend* backend) : backend_(backend) {}

  grpc::ServerUnaryReactor* ServerLive(
      grpc::CallbackServerContext* context,
      const inference::ServerLiveRequest* request,
      inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(
      grpc::CallbackServerContext* context,
      const inference::ServerReadyRequest* request,
      inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(
      grpc::CallbackServerContext* context,
      const inference::ModelReadyRequest* request,
      inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(
      grpc::CallbackServerContext* context,
      const inference::ServerMetadataRequest* request,
      inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(
      grpc::CallbackServerContext* context,
      const inference::ModelMetadataRequest* request,
      inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(
      grpc::CallbackServerContext* context,
      const inference::ModelInferRequest* request,
      inference::ModelInferResponse* response) override;

 private:
  OipBackend* backend_;
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_OIP_SERVICE_H_
