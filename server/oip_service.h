// Copyright 2026 The mcdrop Authors.
//
// inference.GRPCInferenceService (the Open Inference Protocol) on gRPC's
// callback API, on the same port, registry, engine, limits, tokens and
// metrics as mcdrop.v1.Inference: ModelInfer translates the request
// (server/oip.h), validates it as Predict does, runs it on the engine's pool
// and answers from the engine's completion.

#ifndef MCDROP_SERVER_OIP_SERVICE_H_
#define MCDROP_SERVER_OIP_SERVICE_H_

#include "core/engine.h"
#include "inference/open_inference_grpc.grpc.pb.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request.h"
#include "server/service.h"

namespace mcdrop::server {

class OipService final
    : public inference::GRPCInferenceService::CallbackService {
 public:
  // All must outlive the service; `inference` provides admission, draining
  // and authentication shared with mcdrop.v1.
  OipService(const ModelRegistry* models, Engine* engine, Metrics* metrics,
             Limits limits, InferenceService* inference);

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
  // The model a (name, version string) pair selects.
  absl::StatusOr<std::shared_ptr<const ServedModel>> Find(
      const std::string& name, const std::string& version) const;

  const ModelRegistry* models_;
  Engine* engine_;
  Metrics* metrics_;
  const Limits limits_;
  InferenceService* inference_;
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_OIP_SERVICE_H_
