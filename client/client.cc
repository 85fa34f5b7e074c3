// Copyright 2026 The mcdrop Authors.

#include "client/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/validate_service_config.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "client/validation.h"
#include "core/file_util.h"
#include "core/status_macros.h"

namespace mcdrop {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::StatusOr<grpc::ChannelArguments> ChannelArgumentsOf(
    const ClientOptions& options) {
  if (!options.load_balancing.empty() &&
      options.load_balancing != "round_robin" &&
      options.load_balancing != "pick_first") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown load balancing \"", options.load_balancing,
                     "\" (round_robin or pick_first)"));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (!options.service_config.empty()) {
    const std::string error =
        grpc::experimental::ValidateServiceConfigJSON(options.service_config);
    if (!error.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid service config: ", error));
    }
    args.SetServiceConfigJSON(options.service_config);
  }
  if (!options.load_balancing.empty()) {
    args.SetLoadBalancingPolicyName(options.load_balancing);
  }
  auto ms = [](absl::Duration d) {
    return static_cast<int>(absl::ToInt64Milliseconds(d));
  };
  if (options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ms(options.keepalive_time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms(options.keepalive_timeout));
  }
  if (options.max_reconnect_backoff > absl::ZeroDuration()) {
    const int most = std::max(1, ms(options.max_reconnect_backoff));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, most);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(1000, most));
  }
  return args;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("empty target");
  auto c = std::make_unique<Client>();
  c->options_ = options;
  if (!options.auth_token.empty()) {
    c->authorization_ = "Bearer " + options.auth_token;
  }
  MCDROP_ASSIGN_OR_RETURN(grpc::ChannelArguments args,
                          ChannelArgumentsOf(options));
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (options.tls || !options.tls_ca.empty() || !options.tls_cert.empty() ||
      !options.tls_key.empty()) {
    if (options.tls_cert.empty() != options.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate and its key go together (tls_cert, tls_key)");
    }
    grpc::SslCredentialsOptions ssl;
    for (auto [path, out] : {std::pair{&options.tls_ca, &ssl.pem_root_certs},
                             {&options.tls_cert, &ssl.pem_cert_chain},
                             {&options.tls_key, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      MCDROP_ASSIGN_OR_RETURN(*out, ReadFileToString(*path));
      if (out->empty()) {
        return absl::NotFoundError(
            absl::StrCat("TLS file \"", *path, "\" is empty"));
      }
    }
    credentials = grpc::SslCredentials(ssl);
  }
  c->channel_ = grpc::CreateCustomChannel(options.target, credentials, args);
  if (c->channel_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot make a channel to \"", options.target, "\""));
  }
  c->stub_ = v1::Inference::NewStub(c->channel_);
  c->health_ = grpc::health::v1::Health::NewStub(c->channel_);
  return c;
}

void Client::PrepareContext(grpc::ClientContext* ctx,
                            absl::Duration timeout) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(timeout));
  if (!authorization_.empty())
    ctx->AddMetadata("authorization", authorization_);
}

absl::StatusOr<v1::PredictResponse> Client::Predict(
    const v1::PredictRequest& request) const {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, options_.timeout);
  v1::PredictResponse response;
  grpc::Status s = stub_->Predict(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  MCDROP_RETURN_IF_ERROR(
      ValidatePredictResponse(response, ExpectationOf(request)));
  return response;
}

absl::StatusOr<v1::PredictResponse> Client::PredictStream(
    const v1::PredictRequest& request,
    const std::function<bool(const v1::PredictResponse&)>& on_estimate) const {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, options_.timeout);
  auto reader = stub_->PredictStream(&ctx, request);
  v1::PredictResponse message;
  absl::optional<v1::PredictResponse> answer;
  while (reader->Read(&message)) {
    if (message.final()) {
      answer = message;
    } else if (!on_estimate(message)) {
      ctx.TryCancel();  // the caller has seen enough
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  if (!answer) {
    return absl::InternalError("the stream ended without a final answer");
  }
  MCDROP_RETURN_IF_ERROR(
      ValidatePredictResponse(*answer, ExpectationOf(request)));
  return *std::move(answer);
}

absl::StatusOr<v1::ListModelsResponse> Client::ListModels() const {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, options_.timeout);
  v1::ListModelsResponse response;
  grpc::Status s = stub_->ListModels(&ctx, v1::ListModelsRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::FeedbackResponse> Client::Feedback(
    const v1::FeedbackRequest& request) const {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, options_.timeout);
  v1::FeedbackResponse response;
  grpc::Status s = stub_->Feedback(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::ModelMetadata> Client::GetModelMetadata(
    const std::string& model, int64_t version) const {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, options_.timeout);
  v1::GetModelMetadataRequest request;
  request.set_model(model);
  request.set_version(version);
  v1::ModelMetadata response;
  grpc::Status s = stub_->GetModelMetadata(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus>
Client::Health(const std::string& service) const {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, options_.timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = health_->Check(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response.status();
}

}  // namespace mcdrop
