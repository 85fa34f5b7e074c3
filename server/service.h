// Copyright 2026 The mcdrop Authors.
//
// mcdrop.v1.Inference on gRPC's callback API: a Predict handler validates the
// request, hands it to the engine's thread pool and returns at once; the
// engine's completion finishes the reactor. No gRPC thread waits for the
// stochastic passes.

#ifndef MCDROP_SERVER_SERVICE_H_
#define MCDROP_SERVER_SERVICE_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "core/engine.h"
#include "mcdrop/v1/inference.grpc.pb.h"
#include "server/metrics.h"
#include "server/model_registry.h"

namespace mcdrop::server {

struct Limits {
  int default_samples = 100;  // T when neither request nor model says
  int max_samples = 100000;   // largest T a request may ask for
  int max_batch_rows = 1024;  // rows per request
  int max_inflight = 256;     // admitted requests (computing or queued)
  int64_t max_message_bytes = 64 << 20;  // also bounds returned samples
};

class InferenceService final : public mcdrop::v1::Inference::CallbackService {
 public:
  // All three must outlive the service.
  InferenceService(const ModelRegistry* models, Engine* engine,
                   Metrics* metrics, Limits limits);

  grpc::ServerUnaryReactor* Predict(
      grpc::CallbackServerContext* context,
      const mcdrop::v1::PredictRequest* request,
      mcdrop::v1::PredictResponse* response) override;
  grpc::ServerUnaryReactor* GetModelMetadata(
      grpc::CallbackServerContext* context,
      const mcdrop::v1::GetModelMetadataRequest* request,
      mcdrop::v1::ModelMetadata* response) override;
  grpc::ServerUnaryReactor* ListModels(
      grpc::CallbackServerContext* context,
      const mcdrop::v1::ListModelsRequest* request,
      mcdrop::v1::ListModelsResponse* response) override;

  // From now on Predict answers UNAVAILABLE (the server is draining).
  void StartDraining() { draining_.store(true); }
  int inflight() const { return inflight_.load(); }

 private:
  const ModelRegistry* models_;
  Engine* engine_;
  Metrics* metrics_;
  const Limits limits_;
  std::atomic<int> inflight_{0};
  std::atomic<bool> draining_{false};
};

// Fills `out` from a model (shared by GetModelMetadata and ListModels).
void DescribeModel(const ServedModel& model, bool is_default,
                   mcdrop::v1::ModelMetadata* out);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_SERVICE_H_
