// Copyright 2026 The mcdrop Authors.
//
// mcdrop-server as a library: loads the models, starts the engine, the gRPC
// server (mcdrop.v1.Inference, inference.GRPCInferenceService,
// grpc.health.v1.Health, reflection), the Open Inference Protocol's HTTP/REST
// listener and the metrics endpoint. main() only parses flags into
// ServerOptions and waits for a signal.

#ifndef MCDROP_SERVER_SERVER_H_
#define MCDROP_SERVER_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "server/feedback.h"
#include "server/http_server.h"
#include "server/memory.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/oip_http.h"
#include "server/oip_service.h"
#include "server/service.h"

namespace mcdrop::server {

struct ServerOptions {
  // "NAME=PATH" or "PATH" (named after the file). The first is the default.
  std::vector<std::string> models;
  // A model repository ROOT/<name>/<version>/model.safetensors (empty: none),
  // scanned every `repository_poll` (zero: once, at start).
  std::string model_repository;
  absl::Duration repository_poll = absl::Seconds(5);
  // The model of requests that name none (empty: the first --model, else the
  // repository's first model by name).
  std::string default_model;
  std::string host = "0.0.0.0";
  int port = 50051;                   // 0 picks a free port
  std::string metrics_address;        // "host:port" of /metrics; empty: none
  int threads = 0;                    // engine threads; 0: all cores
  bool inline_small_requests = true;  // EngineOptions::inline_small_requests
  // "f32" or "bf16": every model computes so whatever its file says; empty:
  // each model's own precision (metadata "precision", default f32).
  std::string precision;
  Limits limits;
  // Predictions kept for feedback, its rolling figures and adaptive
  // conformal inference (server/feedback.h).
  FeedbackOptions feedback;
  // TLS: PEM files of the server's certificate chain and key (both or
  // neither). With `tls_client_ca`, clients must present a certificate
  // signed by it (mutual TLS).
  std::string tls_cert, tls_key, tls_client_ca;
  // Bearer tokens, one per line; when set, Inference calls need
  // "authorization: Bearer <token>" (health checks stay open).
  std::string auth_token_file;
  // Connections that have not finished the HTTP/2 (and TLS) handshake by
  // then are closed: silent or half-open sockets cannot pile up.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // The server pings idle connections this often and drops those whose
  // peer does not answer within keepalive_timeout (a vanished client).
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // When > 0, a connection is closed gracefully (GOAWAY; its calls get
  // max_connection_age_grace to finish) once it is this old, so clients
  // reconnect and re-resolve their target: client-side balancing over a
  // headless Service then finds pods added since (gRPC's DNS resolver looks
  // again only when a connection ends).
  absl::Duration max_connection_age = absl::ZeroDuration();
  absl::Duration max_connection_age_grace = absl::Seconds(30);
  // Memory gRPC may use for all connections' buffers together (0: no cap).
  int64_t memory_quota_bytes = int64_t{2} << 30;
  // Free heap pages go back to the system this often (MemoryReturner);
  // zero: never.
  absl::Duration memory_return_period = absl::Seconds(5);
  // The Open Inference Protocol's HTTP/REST API on `http_host`:`http_port`
  // (empty host: `host`; port 0 picks a free one, -1: no HTTP listener).
  // TLS, tokens and limits are the gRPC side's; body size is bounded by
  // limits.max_message_bytes.
  std::string http_host;
  int http_port = -1;
  int http_threads = 2;
  absl::Duration http_idle_timeout = absl::Seconds(60);
  absl::Duration http_read_timeout = absl::Seconds(30);
  int http_max_connections = 1024;
};

class Server {
 public:
  // Loads every model and starts serving. Any model that fails to load fails
  // the start, with the loader's message naming the file.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);
  ~Server();

  // Health turns NOT_SERVING and new Predicts get UNAVAILABLE, while the
  // server still answers health checks (so load balancers see it leave).
  void StartDraining();
  // Drains (StartDraining), stops accepting calls, gives calls in flight up
  // to `grace` to finish, cancels the rest, and returns when every call is
  // done. Idempotent.
  void Shutdown(absl::Duration grace);
  // What SIGTERM does: leaves the load balancers, then shuts down. For
  // `delay`, gRPC health answers NOT_SERVING and the HTTP readiness paths
  // "not ready" while every call is still answered, so that health-checking
  // clients and proxies (and Kubernetes' endpoints) move traffic away before
  // any call is refused; then Shutdown(grace). A zero delay is Shutdown.
  void Drain(absl::Duration delay, absl::Duration grace);

  int port() const { return port_; }
  // The HTTP/REST port (-1 without an HTTP listener).
  int http_port() const { return http_ != nullptr ? http_->port() : -1; }
  std::vector<int> metrics_ports() const { return metrics_->ports(); }
  Metrics& metrics() { return *metrics_; }
  FeedbackMonitor& feedback() { return *feedback_; }
  Engine& engine() { return *engine_; }
  // Predict calls admitted and not yet answered.
  int inflight() const { return service_->inflight(); }
  const ModelRegistry& models() const { return models_; }

 private:
  Server() = default;
  ModelRegistry models_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<FeedbackMonitor> feedback_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<OipBackend> oip_backend_;
  std::unique_ptr<OipService> oip_service_;
  std::unique_ptr<OipHttpHandler> oip_http_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<grpc::Server> server_;
  void PollRepository();
  absl::Status StartHttp();

  ServerOptions options_;
  std::thread poller_;
  std::unique_ptr<MemoryReturner> memory_returner_;
  absl::Notification stop_polling_;
  int port_ = 0;
  bool shut_down_ = false;
  bool draining_ = false;
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_SERVER_H_
