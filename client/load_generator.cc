// Copyright 2026 The mcdrop Authors.

#include "client/load_generator.h"

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/validate_service_config.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "inference/open_inference_grpc.grpc.pb.h"

namespace mcdrop {
namespace {

using Clock = std::chrono::steady_clock;

// The code's canonical name ("OK", "INVALID_ARGUMENT", ...): gRPC's codes
// have absl's numbers.
std::string CodeName(grpc::StatusCode code) {
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

// One call in flight.
struct Call {
  grpc::ClientContext context;
  grpc::Status status;
  Clock::time_point start;
  bool measured = false;
  int64_t rows = 0;
  v1::PredictResponse predict_response;
  inference::ModelInferResponse oip_response;
  grpc::health::v1::HealthCheckResponse health_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::PredictResponse>> predict;
  std::unique_ptr<
      grpc::ClientAsyncResponseReader<inference::ModelInferResponse>>
      oip;
  std::unique_ptr<
      grpc::ClientAsyncResponseReader<grpc::health::v1::HealthCheckResponse>>
      health;
};

// The measured calls of a run, and the report made of them.
struct Tally {
  // Calls are put in intervals of `interval` from `origin` (none when zero).
  Tally(Clock::time_point origin, const LoadOptions& options)
      : origin(origin),
        interval(absl::ToDoubleSeconds(options.interval)),
        keep_calls(options.keep_calls) {
    const double until_origin =
        std::chrono::duration<double>(origin - Clock::now()).count();
    report.start_unix = absl::ToUnixMicros(absl::Now()) * 1e-6 + until_origin;
  }
  const Clock::time_point origin;
  const double interval;
  const bool keep_calls;
  struct Bucket {
    std::vector<double> latencies;
    int64_t errors = 0;
  };
  std::vector<Bucket> buckets;
  std::vector<double> latencies;
  Clock::time_point first_start = Clock::time_point::max();
  Clock::time_point last_end = Clock::time_point::min();
  double rows = 0, passes = 0;
  LoadReport report;

  void Record(Clock::time_point start, Clock::time_point end,
              const std::string& code, bool ok, double call_rows,
              double samples) {
    const double latency = std::chrono::duration<double>(end - start).count();
    latencies.push_back(latency);
    const double at = std::chrono::duration<double>(end - origin).count();
    if (keep_calls) report.calls.push_back({at, latency, code});
    if (interval > 0) {
      const size_t i = static_cast<size_t>(std::max(0.0, at / interval));
      if (buckets.size() <= i) buckets.resize(i + 1);
      buckets[i].latencies.push_back(latency);
      if (!ok) ++buckets[i].errors;
    }
    first_start = std::min(first_start, start);
    last_end = std::max(last_end, end);
    ++report.codes[code];
    if (!ok) {
      ++report.errors;
    } else {
      rows += call_rows;
      passes += call_rows * samples;
    }
  }
  LoadReport Finish();
};

// The run's plan: warm-up, then a count or a duration of measured calls.
struct Plan {
  Plan(const LoadOptions& o, LoadReport* report)
      : options(o),
        report(report),
        measure_from(Clock::now() + absl::ToChronoNanoseconds(o.warmup)),
        stop_at(measure_from + absl::ToChronoNanoseconds(o.duration)) {}
  // Whether another call may start; sets *measured for it.
  bool Next(bool* measured) {
    const Clock::time_point now = Clock::now();
    *measured = now >= measure_from;
    if (!*measured) {
      ++report->warmup_calls;
      return true;
    }
    if (options.requests > 0 ? started >= options.requests : now >= stop_at) {
      return false;
    }
    ++started;
    return true;
  }
  const LoadOptions& options;
  LoadReport* report;
  const Clock::time_point measure_from, stop_at;
  int64_t started = 0;
};

absl::Status CheckOptions(const LoadOptions& options, bool need_requests,
                          const std::vector<v1::PredictRequest>& requests) {
  if (options.concurrency < 1)
    return absl::InvalidArgumentError("concurrency must be >= 1");
  if (need_requests && requests.empty()) {
    return absl::InvalidArgumentError("no Predict request to send");
  }
  if (options.requests <= 0 && options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "give a number of requests or a duration > 0");
  }
  return absl::OkStatus();
}

int64_t Rows(const v1::PredictRequest& r) {
  return r.shape_size() == 2 ? r.shape(0) : 1;
}

std::string Levels(const v1::PredictRequest& r) {
  return absl::StrJoin(r.interval_levels(), ",");
}

// A Predict request as the Open Inference Protocol's ModelInferRequest.
inference::ModelInferRequest ToOip(const v1::PredictRequest& r) {
  inference::ModelInferRequest q;
  q.set_model_name(r.model());
  if (r.version() > 0) q.set_model_version(absl::StrCat(r.version()));
  auto* in = q.add_inputs();
  in->set_name("input");
  in->set_datatype("FP32");
  for (int64_t d : r.shape()) in->add_shape(d);
  q.add_raw_input_contents(
      std::string(reinterpret_cast<const char*>(r.inputs().data()),
                  r.inputs_size() * sizeof(float)));
  auto& p = *q.mutable_parameters();
  if (r.samples() > 0) p["samples"].set_int64_param(r.samples());
  if (r.seed() != 0) p["seed"].set_uint64_param(r.seed());
  if (r.mode() == v1::DETERMINISTIC)
    p["mode"].set_string_param("deterministic");
  if (r.exclude_noise()) p["exclude_noise"].set_bool_param(true);
  if (r.interval_levels_size() > 0) {
    p["interval_levels"].set_string_param(Levels(r));
  }
  if (r.return_samples()) q.add_outputs()->set_name("samples");
  return q;
}

// The JSON text of a Predict request's OIP parameters.
std::string OipParametersJson(const v1::PredictRequest& r, bool binary) {
  std::vector<std::string> p;
  if (r.samples() > 0) p.push_back(absl::StrCat("\"samples\":", r.samples()));
  if (r.seed() != 0) p.push_back(absl::StrCat("\"seed\":", r.seed()));
  if (r.mode() == v1::DETERMINISTIC) p.push_back("\"mode\":\"deterministic\"");
  if (r.exclude_noise()) p.push_back("\"exclude_noise\":true");
  if (r.interval_levels_size() > 0) {
    p.push_back(absl::StrCat("\"interval_levels\":\"", Levels(r), "\""));
  }
  if (binary) p.push_back("\"binary_data_output\":true");
  return absl::StrCat("{", absl::StrJoin(p, ","), "}");
}

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using HttpRequestMessage = http::request<http::string_body>;

// POST /v2/models/{model}/infer for a Predict request.
HttpRequestMessage ToHttp(const v1::PredictRequest& r, const std::string& host,
                          const std::string& token, bool binary) {
  std::string target = absl::StrCat("/v2/models/", r.model());
  if (r.version() > 0) absl::StrAppend(&target, "/versions/", r.version());
  target += "/infer";
  HttpRequestMessage m(http::verb::post, target, 11);
  m.set(http::field::host, host);
  if (!token.empty()) m.set(http::field::authorization, "Bearer " + token);
  std::string input =
      absl::StrCat("{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[",
                   absl::StrJoin(r.shape(), ","), "]");
  const std::string raw(reinterpret_cast<const char*>(r.inputs().data()),
                        r.inputs_size() * sizeof(float));
  if (binary) {
    absl::StrAppend(&input,
                    ",\"parameters\":{\"binary_data_size\":", raw.size(), "}}");
  } else {
    absl::StrAppend(&input, ",\"data\":[",
                    absl::StrJoin(r.inputs(), ",",
                                  [](std::string* out, float v) {
                                    absl::StrAppend(out, v);
                                  }),
                    "]}");
  }
  std::string json =
      absl::StrCat("{\"inputs\":[", input,
                   "],\"parameters\":", OipParametersJson(r, binary), "}");
  m.set(http::field::content_type,
        binary ? "application/octet-stream" : "application/json");
  if (binary) {
    m.set("Inference-Header-Content-Length", absl::StrCat(json.size()));
    json += raw;
  }
  m.body() = std::move(json);
  m.prepare_payload();
  return m;
}

// T of an OIP answer: its "samples" parameter.
double SamplesOf(const std::string& body) {
  const size_t at = body.find("\"samples\":");
  if (at == std::string::npos) return 0;
  double t = 0;
  size_t end = body.find_first_of(",}", at);
  absl::SimpleAtod(body.substr(at + 10, end - at - 10), &t);
  return t;
}

}  // namespace

LoadReport Tally::Finish() {
  for (size_t i = 0; i < buckets.size(); ++i) {
    LoadInterval& out = report.series.emplace_back();
    Bucket& b = buckets[i];
    out.start = i * interval;
    out.count = static_cast<int64_t>(b.latencies.size());
    out.errors = b.errors;
    std::sort(b.latencies.begin(), b.latencies.end());
    out.p50 = Quantile(b.latencies, 0.50);
    out.p99 = Quantile(b.latencies, 0.99);
  }
  report.count = static_cast<int64_t>(latencies.size());
  if (report.count == 0) return report;
  report.seconds =
      std::chrono::duration<double>(last_end - first_start).count();
  std::sort(latencies.begin(), latencies.end());
  report.min = latencies.front();
  report.max = latencies.back();
  report.mean =
      std::accumulate(latencies.begin(), latencies.end(), 0.0) / report.count;
  report.p50 = Quantile(latencies, 0.50);
  report.p90 = Quantile(latencies, 0.90);
  report.p99 = Quantile(latencies, 0.99);
  report.p999 = Quantile(latencies, 0.999);
  if (report.seconds > 0) {
    report.requests_per_second = report.count / report.seconds;
    report.rows_per_second = rows / report.seconds;
    report.passes_per_second = passes / report.seconds;
  }
  return report;
}

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

absl::StatusOr<LoadReport> RunLoad(
    const Client& client, const LoadOptions& options,
    const std::vector<v1::PredictRequest>& requests) {
  if (absl::Status s = CheckOptions(
          options, options.rpc != LoadOptions::Rpc::kHealth, requests);
      !s.ok()) {
    return s;
  }
  grpc::CompletionQueue cq;
  const grpc::health::v1::HealthCheckRequest health_request;
  const std::shared_ptr<grpc::Channel>& channel = client.channel();
  auto stub = v1::Inference::NewStub(channel);
  auto health_stub = grpc::health::v1::Health::NewStub(channel);
  auto oip_stub = inference::GRPCInferenceService::NewStub(channel);
  std::vector<inference::ModelInferRequest> oip_requests;
  if (options.rpc == LoadOptions::Rpc::kOipInfer) {
    for (const auto& r : requests) oip_requests.push_back(ToOip(r));
  }
  Plan plan(options, nullptr);
  Tally tally(plan.measure_from, options);
  plan.report = &tally.report;
  int64_t next_request = 0, outstanding = 0;

  // Starts one more call if the plan allows; returns false when done.
  auto start_call = [&]() -> bool {
    bool measured;
    if (!plan.Next(&measured)) return false;
    auto* call = new Call();
    call->measured = measured;
    client.PrepareContext(&call->context, options.timeout);
    call->start = Clock::now();
    const size_t i = next_request++ % std::max<size_t>(1, requests.size());
    if (options.rpc == LoadOptions::Rpc::kPredict) {
      call->rows = Rows(requests[i]);
      call->predict = stub->AsyncPredict(&call->context, requests[i], &cq);
      call->predict->Finish(&call->predict_response, &call->status, call);
    } else if (options.rpc == LoadOptions::Rpc::kOipInfer) {
      call->rows = Rows(requests[i]);
      call->oip =
          oip_stub->AsyncModelInfer(&call->context, oip_requests[i], &cq);
      call->oip->Finish(&call->oip_response, &call->status, call);
    } else {
      call->health =
          health_stub->AsyncCheck(&call->context, health_request, &cq);
      call->health->Finish(&call->health_response, &call->status, call);
    }
    ++outstanding;
    return true;
  };

  for (int i = 0; i < options.concurrency; ++i) {
    if (!start_call()) break;
  }
  void* tag;
  bool ok;
  while (outstanding > 0 && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    const Clock::time_point end = Clock::now();
    --outstanding;
    if (call->measured) {
      double samples = call->predict_response.samples();
      if (options.rpc == LoadOptions::Rpc::kOipInfer) {
        auto it = call->oip_response.parameters().find("samples");
        samples = it == call->oip_response.parameters().end()
                      ? 0
                      : static_cast<double>(it->second.int64_param());
      }
      tally.Record(call->start, end, CodeName(call->status.error_code()),
                   call->status.ok(), call->rows, samples);
    }
    start_call();
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return tally.Finish();
}

absl::StatusOr<LoadReport> RunHttpLoad(
    const std::string& host, int port, const std::string& token, bool binary,
    const LoadOptions& options,
    const std::vector<v1::PredictRequest>& requests) {
  if (absl::Status s = CheckOptions(options, true, requests); !s.ok()) return s;
  for (const auto& r : requests) {
    if (r.model().empty()) {
      return absl::InvalidArgumentError(
          "the Open Inference Protocol needs a model name: pass --model");
    }
  }
  net::io_context io;
  net::ip::tcp::resolver resolver(io);
  beast::error_code ec;
  const auto endpoints = resolver.resolve(host, absl::StrCat(port), ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", host, ": ", ec.message()));
  }
  const std::string host_header = absl::StrCat(host, ":", port);
  std::vector<HttpRequestMessage> messages;
  for (const auto& r : requests) {
    messages.push_back(ToHttp(r, host_header, token, binary));
  }
  // One keep-alive connection per concurrent call.
  struct Conn {
    explicit Conn(net::io_context& io) : stream(io) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    Clock::time_point start;
    bool measured = false;
    int64_t rows = 0;
  };
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < options.concurrency; ++i) {
    conns.push_back(std::make_unique<Conn>(io));
    conns.back()->stream.connect(endpoints, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", host_header, ": ", ec.message()));
    }
  }
  Plan plan(options, nullptr);
  Tally tally(plan.measure_from, options);
  plan.report = &tally.report;
  int64_t next_request = 0;
  std::function<void(Conn*)> start_call = [&](Conn* c) {
    if (!plan.Next(&c->measured)) return;
    const HttpRequestMessage& m = messages[next_request % messages.size()];
    c->rows = Rows(requests[next_request++ % requests.size()]);
    c->response = {};
    c->start = Clock::now();
    c->stream.expires_after(absl::ToChronoNanoseconds(options.timeout));
    http::async_write(c->stream, m, [&, c](beast::error_code ec, size_t) {
      auto done = [&, c](beast::error_code ec) {
        const Clock::time_point end = Clock::now();
        const int status = ec ? 0 : c->response.result_int();
        if (c->measured) {
          tally.Record(c->start, end,
                       status == 200 ? std::string("OK")
                       : status == 0 ? std::string("UNAVAILABLE")
                                     : absl::StrCat("HTTP_", status),
                       status == 200, c->rows,
                       status == 200 ? SamplesOf(c->response.body()) : 0);
        }
        if (ec || !c->response.keep_alive()) {  // reconnect
          beast::error_code ignored;
          c->stream.socket().close(ignored);
          c->buffer.clear();
          c->stream.connect(endpoints, ignored);
        }
        start_call(c);
      };
      if (ec) return done(ec);
      http::async_read(c->stream, c->buffer, c->response,
                       [done](beast::error_code ec, size_t) { done(ec); });
    });
  };
  for (auto& c : conns) start_call(c.get());
  io.run();
  return tally.Finish();
}

}  // namespace mcdrop
