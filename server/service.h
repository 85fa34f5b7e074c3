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
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "core/engine.h"
#include "mcdrop/v1/inference.grpc.pb.h"
#include "server/feedback.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request.h"

namespace mcdrop::server {

// The Inference methods as raw callback methods (see Predict below).
using RawInferenceService =
    mcdrop::v1::Inference::WithRawCallbackMethod_Predict<
        mcdrop::v1::Inference::WithRawCallbackMethod_PredictStream<
            mcdrop::v1::Inference::WithRawCallbackMethod_GetModelMetadata<
                mcdrop::v1::Inference::WithRawCallbackMethod_ListModels<
                    mcdrop::v1::Inference::WithRawCallbackMethod_Feedback<
                        mcdrop::v1::Inference::Service>>>>>;

class InferenceService final : public RawInferenceService {
 public:
  // All four must outlive the service. With `tokens` non-empty, every
  // Inference call must carry "authorization: Bearer <one of them>".
  InferenceService(const ModelRegistry* models, Engine* engine,
                   Metrics* metrics, FeedbackMonitor* feedback, Limits limits,
                   std::vector<std::string> tokens = {});

  // The methods take and give bytes; each parses its request itself.
  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  // Predict with running estimates: the passes run in rounds (RunPlan) and
  // each round but the last sends the figures so far; the last message is
  // Predict's answer. A cancelled call stops the engine's rounds at once.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* PredictStream(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetModelMetadata(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  // Joins observations with kept predictions (FeedbackMonitor::Submit).
  grpc::ServerUnaryReactor* Feedback(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

  FeedbackMonitor* feedback() const { return feedback_; }

  // From now on Predict answers UNAVAILABLE (the server is draining).
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  // From now on readiness checks (the OIP's ServerReady and ModelReady) say
  // "not ready" while calls are still served: the server is leaving the
  // load balancers before it drains (Server::Drain).
  void StartLeaving() { leaving_.store(true); }
  bool ready() const { return !leaving_.load() && !draining_.load(); }
  // Counts the call in mcdrop_retry_attempts_total when it is a retry
  // attempt of the client's retry policy (grpc-previous-rpc-attempts).
  void CountRetry(const grpc::CallbackServerContext* context,
                  Endpoint endpoint) const;
  int inflight() const { return inflight_.load(); }
  // Admission shared with the Open Inference Protocol service: true (and
  // counted in flight until Release) when under the in-flight limit.
  bool TryAdmit();
  void Release();

  // OK, or UNAUTHENTICATED when tokens are required and the call's
  // authorization metadata holds none of them.
  absl::Status Authenticate(const grpc::CallbackServerContext* context) const;
  // The same check on an "authorization" value (HTTP's header; nullopt when
  // the request has none).
  absl::Status CheckAuthorization(
      absl::optional<absl::string_view> value) const;

 private:
  struct Admitted;
  // Predict's and PredictStream's checks before the engine: token, message,
  // draining, model, admission (Release when the call ends), the plan. On
  // error *mm is the model's metrics (or Unknown's) to count it under.
  absl::Status Admit(const grpc::CallbackServerContext* context,
                     const grpc::ByteBuffer* raw_request,
                     mcdrop::v1::PredictRequest* request,
                     const ModelMetrics** mm, Admitted* admitted);

  const ModelRegistry* models_;
  Engine* engine_;
  Metrics* metrics_;
  FeedbackMonitor* feedback_;
  absl::Status Metadata(const mcdrop::v1::GetModelMetadataRequest& request,
                        mcdrop::v1::ModelMetadata* response) const;
  void AllModels(mcdrop::v1::ListModelsResponse* response) const;

  const Limits limits_;
  const std::vector<std::string> tokens_;
  std::atomic<int> inflight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> leaving_{false};
};

// True when `a` equals `b`; the time taken depends on the lengths only, not
// on the position of the first difference.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Fills `out` from a model (shared by GetModelMetadata and ListModels).
void DescribeModel(const ServedModel& model, bool is_default,
                   mcdrop::v1::ModelMetadata* out);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_SERVICE_H_
