// Copyright 2026 The mcdrop Authors.

#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/file_util.h"
#include "core/status_macros.h"

namespace mcdrop::server {

constexpr char kServiceName[] = "mcdrop.v1.Inference";

namespace {

// A file named by a flag, its errors prefixed with what it is.
absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         const char* what) {
  auto bytes = ReadFileToString(path);
  if (!bytes.ok()) {
    return absl::Status(
        bytes.status().code(),
        absl::StrCat("cannot read ", what, ": ", bytes.status().message()));
  }
  return bytes;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const ServerOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  MCDROP_ASSIGN_OR_RETURN(pair.private_key, ReadFlagFile(o.tls_key, "TLS key"));
  MCDROP_ASSIGN_OR_RETURN(pair.cert_chain,
                          ReadFlagFile(o.tls_cert, "TLS certificate"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca.empty()) {
    MCDROP_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadFlagFile(o.tls_client_ca, "client CA"));
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server());
  s->options_ = options;
  if (options.models.empty() && options.model_repository.empty()) {
    return absl::InvalidArgumentError(
        "no model given: pass --model NAME=PATH or --model_repository DIR");
  }
  if (absl::Status f = ValidateFeedbackOptions(options.feedback); !f.ok()) {
    return f;
  }
  for (double e : {options.limits.default_standard_error,
                   options.limits.default_relative_error}) {
    if (!(e >= 0) || !std::isfinite(e)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--default_standard_error and --default_relative_error must be "
          "finite and >= 0, got ",
          e));
    }
  }
  if (!options.precision.empty()) {
    auto precision = ParsePrecision(options.precision);
    if (!precision.ok()) return precision.status();
    s->models_.OverridePrecision(*precision);
  }
  for (const std::string& spec : options.models) {
    std::string name, path;
    ParseModelSpec(spec, &name, &path);
    if (absl::Status st = s->models_.Load(name, path); !st.ok()) return st;
    auto m = s->models_.Get(name, 0);
    spdlog::info("model {}: {} {} from {} (default T {}, {})", name,
                 std::string(TaskName((*m)->model.task())),
                 absl::StrJoin((*m)->model.widths(), "-"), path,
                 (*m)->model.spec().default_samples,
                 std::string(PrecisionName((*m)->model.precision())));
  }
  s->engine_ = std::make_unique<Engine>(
      EngineOptions{.threads = options.threads,
                    .inline_small_requests = options.inline_small_requests});
  auto metrics = Metrics::Create(options.metrics_address, s->engine_.get());
  if (!metrics.ok()) return metrics.status();
  s->metrics_ = *std::move(metrics);
  if (!options.model_repository.empty()) {
    absl::Status st = s->models_.SyncRepository(
        options.model_repository,
        [m = s->metrics_.get()](const std::string& name, int64_t,
                                const std::string&) {
          m->CountLoadFailure(name);
        });
    if (!st.ok()) return st;
    spdlog::info("model repository {}: {} model(s), scanned every {}",
                 options.model_repository, s->models_.Names().size(),
                 options.repository_poll > absl::ZeroDuration()
                     ? absl::FormatDuration(options.repository_poll)
                     : std::string("(never: loaded once)"));
  }
  if (!options.default_model.empty()) {
    if (!s->models_.Get(options.default_model, 0).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--default_model \"", options.default_model, "\" is not served"));
    }
    s->models_.set_default_name(options.default_model);
  }
  if (s->models_.empty()) {
    return absl::InvalidArgumentError("no model could be loaded");
  }
  for (const auto& m : s->models_.List()) s->metrics_->ForModel(*m);
  s->metrics_->SetServedModels(s->models_.List());
  std::vector<std::string> tokens;
  if (!options.auth_token_file.empty()) {
    MCDROP_ASSIGN_OR_RETURN(
        const std::string text,
        ReadFlagFile(options.auth_token_file, "token file"));
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty() && line[0] != '#') tokens.emplace_back(line);
    }
    if (tokens.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token file \"", options.auth_token_file, "\" holds no token"));
    }
  }
  s->feedback_ = std::make_unique<FeedbackMonitor>(options.feedback,
                                                   &s->metrics_->registry());
  s->service_ = std::make_unique<InferenceService>(
      &s->models_, s->engine_.get(), s->metrics_.get(), s->feedback_.get(),
      options.limits, std::move(tokens));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(
      options.host.find(':') != std::string::npos ? "[" + options.host + "]"
                                                  : options.host,
      ":", options.port);
  MCDROP_ASSIGN_OR_RETURN(auto credentials, MakeCredentials(options));
  builder.AddListeningPort(address, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  s->oip_backend_ = std::make_unique<OipBackend>(
      &s->models_, s->engine_.get(), s->metrics_.get(), options.limits,
      s->service_.get());
  s->oip_service_ = std::make_unique<OipService>(s->oip_backend_.get());
  builder.RegisterService(s->oip_service_.get());
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.handshake_timeout)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  if (options.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options.max_connection_age)));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options.max_connection_age_grace)));
  }
  if (options.memory_quota_bytes > 0) {
    grpc::ResourceQuota quota("mcdrop-server");
    quota.Resize(static_cast<size_t>(options.memory_quota_bytes));
    builder.SetResourceQuota(quota);
  }
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(options.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(
      static_cast<int>(options.limits.max_message_bytes));
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  if (options.http_port >= 0) {
    MCDROP_RETURN_IF_ERROR(s->StartHttp());
  }
  auto* health = s->server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  spdlog::info(
      "listening on {}:{} (gRPC: {}, grpc.health.v1.Health, reflection; {}; "
      "{})",
      options.host, s->port_, kServiceName,
      options.tls_cert.empty()        ? "plaintext"
      : options.tls_client_ca.empty() ? "TLS"
                                      : "mutual TLS",
      options.auth_token_file.empty() ? "no authentication"
                                      : "bearer tokens required");
  if (!options.metrics_address.empty()) {
    spdlog::info("metrics on http://{}/metrics (port {})",
                 options.metrics_address,
                 absl::StrJoin(s->metrics_->ports(), ","));
  } else {
    spdlog::info("metrics endpoint disabled");
  }
  if (!options.model_repository.empty() &&
      options.repository_poll > absl::ZeroDuration()) {
    s->poller_ = std::thread([server = s.get()] { server->PollRepository(); });
  }
  s->memory_returner_ =
      std::make_unique<MemoryReturner>(options.memory_return_period);
  spdlog::info(
      "engine threads {}, max in flight {}, max T {}, max rows {}, default T "
      "{}, default standard-error target {} absolute / {} relative (0: none)",
      s->engine_->threads(), options.limits.max_inflight,
      options.limits.max_samples, options.limits.max_batch_rows,
      options.limits.default_samples, options.limits.default_standard_error,
      options.limits.default_relative_error);
  return s;
}

absl::Status Server::StartHttp() {
  const ServerOptions& o = options_;
  HttpServerOptions h;
  h.host = o.http_host.empty() ? o.host : o.http_host;
  h.port = o.http_port;
  h.threads = o.http_threads;
  h.body_limit = static_cast<size_t>(o.limits.max_message_bytes);
  h.idle_timeout = o.http_idle_timeout;
  h.read_timeout = o.http_read_timeout;
  h.max_connections = o.http_max_connections;
  if (!o.tls_cert.empty()) {
    MCDROP_ASSIGN_OR_RETURN(h.tls_cert,
                            ReadFlagFile(o.tls_cert, "TLS certificate"));
    MCDROP_ASSIGN_OR_RETURN(h.tls_key, ReadFlagFile(o.tls_key, "TLS key"));
    if (!o.tls_client_ca.empty()) {
      MCDROP_ASSIGN_OR_RETURN(h.tls_client_ca,
                              ReadFlagFile(o.tls_client_ca, "client CA"));
    }
  }
  oip_http_ = std::make_unique<OipHttpHandler>(oip_backend_.get());
  // Unknown paths, wrong methods and missing tokens are refused before a
  // body is read: an unauthenticated client cannot make the server hold
  // request bodies.
  h.screen = [handler = oip_http_.get()](const HttpRequest& headers) {
    return handler->Screen(headers);
  };
  auto http = HttpServer::Start(
      h, [handler = oip_http_.get()](std::shared_ptr<HttpExchange> e) {
        (*handler)(std::move(e));
      });
  if (!http.ok()) return http.status();
  http_ = *std::move(http);
  spdlog::info("HTTP/REST (Open Inference Protocol) on {}://{}:{}/v2",
               http_->tls() ? "https" : "http", h.host, http_->port());
  return absl::OkStatus();
}

void Server::PollRepository() {
  while (
      !stop_polling_.WaitForNotificationWithTimeout(options_.repository_poll)) {
    absl::Status st = models_.SyncRepository(
        options_.model_repository,
        [this](const std::string& name, int64_t, const std::string&) {
          metrics_->CountLoadFailure(name);
        });
    if (!st.ok())
      spdlog::error("model repository: {}", std::string(st.message()));
    for (const auto& m : models_.List()) metrics_->ForModel(*m);
    metrics_->SetServedModels(models_.List());
  }
}

void Server::StartDraining() {
  if (draining_) return;
  draining_ = true;
  auto* health = server_->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(kServiceName, false);
  service_->StartDraining();
}

void Server::Drain(absl::Duration delay, absl::Duration grace) {
  if (delay > absl::ZeroDuration() && !shut_down_ && !draining_) {
    auto* health = server_->GetHealthCheckService();
    health->SetServingStatus(false);
    health->SetServingStatus(kServiceName, false);
    service_->StartLeaving();
    spdlog::info(
        "leaving: health NOT_SERVING, calls still served for the drain delay "
        "{} ({} request(s) in flight)",
        absl::FormatDuration(delay), service_->inflight());
    absl::SleepFor(delay);
  }
  Shutdown(grace);
}

void Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  spdlog::info(
      "draining: health NOT_SERVING, {} request(s) in flight, grace {}",
      service_->inflight(), absl::FormatDuration(grace));
  StartDraining();
  if (poller_.joinable()) {
    stop_polling_.Notify();
    poller_.join();
  }
  // Both listeners drain at once, each with the same grace.
  std::thread http_stop;
  if (http_ != nullptr) {
    http_stop = std::thread([this, grace] { http_->Shutdown(grace); });
  }
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(grace));
  server_->Wait();
  if (http_stop.joinable()) http_stop.join();
  spdlog::info("stopped");
}

Server::~Server() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

}  // namespace mcdrop::server
