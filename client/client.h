// Copyright 2026 The mcdrop Authors.
//
// A small C++ client of mcdrop-server. Every call returns absl::Status(Or);
// gRPC errors keep their code and message.
//
//   auto client = mcdrop::Client::Connect({.target = "localhost:50051"});
//   mcdrop::v1::PredictRequest req;
//   req.add_shape(1); req.add_shape(8);
//   for (float v : row) req.add_inputs(v);
//   req.set_samples(1000);
//   auto resp = (*client)->Predict(req);
//   double mean = resp->rows(0).outputs(0).mean();

#ifndef MCDROP_CLIENT_CLIENT_H_
#define MCDROP_CLIENT_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/channel_arguments.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mcdrop/v1/inference.grpc.pb.h"

namespace mcdrop {

struct ClientOptions {
  // Any gRPC target: "host:port", "dns:///name:port",
  // "ipv4:127.0.0.1:5001,127.0.0.1:5002", ...
  std::string target = "localhost:50051";
  // "" (gRPC's default, pick_first) or "round_robin" to spread calls over
  // every address of the target.
  std::string load_balancing;
  // Deadline of each call.
  absl::Duration timeout = absl::Seconds(30);
  int max_message_bytes = 64 << 20;
  // TLS: on when `tls` is set or any of the files below is given. `tls_ca`
  // is a PEM bundle to verify the server by (empty: the system's roots);
  // `tls_cert` and `tls_key` are the client's own certificate and key, for
  // servers that require mutual TLS.
  bool tls = false;
  std::string tls_ca, tls_cert, tls_key;
  // Sent as "authorization: Bearer <auth_token>" on every call (empty:
  // none); the server's health service does not ask for it.
  std::string auth_token;
  // A gRPC service config (JSON): load balancing, health checking, retry
  // policy, as deploy/grpc-service-config.json (docs/deploy.md). Empty:
  // none, `load_balancing` alone.
  std::string service_config;
  // Client keepalive pings every keepalive_time (0: none): a server that
  // stops answering is dropped after about keepalive_time +
  // keepalive_timeout, and its calls fail (or are retried) then, not at
  // their deadline.
  absl::Duration keepalive_time = absl::ZeroDuration();
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Longest wait between reconnection attempts (0: gRPC's, up to 120 s): a
  // restarted server gets calls again within about this.
  absl::Duration max_reconnect_backoff = absl::ZeroDuration();
};

// The channel arguments `options` ask for (message sizes, load balancing,
// service config, keepalive, reconnect backoff): InvalidArgument, with
// gRPC's reason, for a service config gRPC rejects or an unknown policy.
absl::StatusOr<grpc::ChannelArguments> ChannelArgumentsOf(
    const ClientOptions& options);

// Thread-safe: one Client may serve many threads.
class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClientOptions& options);

  // The server's answer, checked against the request
  // (ValidatePredictResponse with ExpectationOf(request), client/validation.h):
  // Internal, naming the inconsistency, if its rows, per-row values,
  // predicted classes, intervals or samples do not fit what was asked.
  absl::StatusOr<v1::PredictResponse> Predict(
      const v1::PredictRequest& request) const;
  // PredictStream: `on_estimate` sees each running estimate (final false) as
  // it arrives and may return false to cancel the call (which then ends
  // CANCELLED); the final answer is returned, checked as by Predict.
  absl::StatusOr<v1::PredictResponse> PredictStream(
      const v1::PredictRequest& request,
      const std::function<bool(const v1::PredictResponse&)>& on_estimate) const;
  absl::StatusOr<v1::ListModelsResponse> ListModels() const;
  // Observations for earlier predictions' rows; one result per item.
  absl::StatusOr<v1::FeedbackResponse> Feedback(
      const v1::FeedbackRequest& request) const;
  absl::StatusOr<v1::ModelMetadata> GetModelMetadata(const std::string& model,
                                                     int64_t version = 0) const;
  // The server's grpc.health.v1 status for `service` ("" = the whole server).
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "") const;

  // Sets the deadline (now + `timeout`) and the authorization metadata of a
  // call made on channel() by other code (the load generator's async calls).
  void PrepareContext(grpc::ClientContext* context,
                      absl::Duration timeout) const;

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  v1::Inference::Stub& stub() const { return *stub_; }
  const ClientOptions& options() const { return options_; }

 private:
  ClientOptions options_;
  std::string authorization_;  // "Bearer <token>", or empty
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// The one conversion from grpc::Status on the client side.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace mcdrop

#endif  // MCDROP_CLIENT_CLIENT_H_
