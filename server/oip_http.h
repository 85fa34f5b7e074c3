// Copyright 2026 The mcdrop Authors.
//
// The Open Inference Protocol's HTTP/REST API on an HttpServer:
//   GET  /v2/health/live, /v2/health/ready               (open)
//   GET  /v2                                             (open)
//   GET  /v2/models/{m}[/versions/{v}]                   metadata
//   GET  /v2/models/{m}[/versions/{v}]/ready
//   POST /v2/models/{m}[/versions/{v}]/infer             JSON tensors, or
//        the binary tensor extension (Inference-Header-Content-Length)
//   POST /v2/models/{m}[/versions/{v}]/feedback          mcdrop's extension:
//        mcdrop.v1 Feedback as JSON
// An inference request's JSON becomes the gRPC ModelInferRequest (so both
// transports share one translation, one validation and one set of errors);
// its answer comes back as JSON, with outputs asked for as binary_data (or
// all, with the request parameter binary_data_output) appended as raw
// little-endian bytes. Errors are {"error": "..."} with an HTTP status from
// the gRPC code. Names and types are documented in docs/api.md.

#ifndef MCDROP_SERVER_OIP_HTTP_H_
#define MCDROP_SERVER_OIP_HTTP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "absl/types/variant.h"
#include "inference/open_inference_grpc.pb.h"
#include "server/http_server.h"
#include "server/oip_service.h"

namespace mcdrop::server {

// An inference request read from HTTP.
struct HttpInferRequest {
  inference::ModelInferRequest request;
  bool binary_all = false;                  // parameter binary_data_output
  std::vector<std::string> binary_outputs;  // outputs with binary_data true
  std::vector<std::string> json_outputs;    // outputs with binary_data false
  // Whether output `name` goes as binary: its own binary_data when given,
  // else binary_data_output.
  bool Binary(const std::string& name) const;
};

// Reads the body of POST .../infer. `header_length` is the
// Inference-Header-Content-Length header (absent: the body is all JSON).
// The JSON must be an object with "inputs" (each with name, shape, datatype
// and either "data" (numbers, flat or nested) or parameters.binary_data_size
// bytes taken in order from the binary part) and optionally "id",
// "parameters" and "outputs". At most `max_values` input numbers are read
// (bounds the memory a hostile body can take). INVALID_ARGUMENT saying what
// is wrong otherwise. Never crashes on any bytes.
absl::StatusOr<HttpInferRequest> ParseHttpInferRequest(
    absl::string_view body, absl::optional<absl::string_view> header_length,
    int64_t max_values);

// The answer to `request`: JSON, or JSON then the binary outputs (with the
// Inference-Header-Content-Length header). An answer whose JSON numbers
// would take more than `max_bytes` (at up to 25 bytes a number) is refused
// with INVALID_ARGUMENT (ask for binary_data) instead of being written.
HttpResponse HttpInferResponse(const HttpInferRequest& request,
                               const inference::ModelInferResponse& response,
                               int64_t max_bytes);

// {"error": message} with the HTTP status of the status's code.
HttpResponse HttpError(const absl::Status& status);
int HttpStatusOf(absl::StatusCode code);

std::string ModelMetadataJson(const inference::ModelMetadataResponse& m);
std::string ServerMetadataJson(const inference::ServerMetadataResponse& m);

// Reads the body of POST .../feedback: {"items": [{"id": "<row id>",
// "targets": [numbers] (or one number), "label": integer}, ...]} for
// `model` (and `version`, "" or a positive integer). INVALID_ARGUMENT
// saying what is wrong; never crashes on any bytes.
absl::StatusOr<mcdrop::v1::FeedbackRequest> ParseHttpFeedbackRequest(
    absl::string_view body, const std::string& model,
    const std::string& version);
// {"model_name", "accepted", "results": [{"id", "outcome", "message"}]}.
std::string FeedbackResponseJson(const mcdrop::v1::FeedbackRequest& request,
                                 const mcdrop::v1::FeedbackResponse& response);

// The router: an HttpHandler. `backend` must outlive it.
class OipHttpHandler {
 public:
  explicit OipHttpHandler(OipBackend* backend) : backend_(backend) {}
  void operator()(std::shared_ptr<HttpExchange> exchange) const;
  // HttpServerOptions::screen: the refusal of a request that has only its
  // headers so far (unknown path, wrong method, missing or bad token), so
  // that its body is never read; nullopt when it may go on.
  absl::optional<HttpResponse> Screen(const HttpRequest& headers) const;

 private:
  enum class Action {
    kLive,
    kReady,
    kServerMetadata,
    kModelMetadata,
    kModelReady,
    kInfer,
    kFeedback
  };
  struct Route {
    Action action = Action::kLive;
    std::string model, version;
  };
  // The route of a request, or the answer that refuses it.
  absl::variant<Route, HttpResponse> Resolve(const HttpRequest& req) const;
  void Infer(std::shared_ptr<HttpExchange> exchange, const std::string& model,
             const std::string& version) const;
  OipBackend* backend_;
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_OIP_HTTP_H_
