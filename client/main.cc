// Copyright 2026 The mcdrop Authors.
//
// mcdrop-client: talks to mcdrop-server.
//
//   mcdrop-client predict [--target HOST:PORT] [--model NAME]
//                 (--input "1,2,3;4,5,6" | --file rows.csv | --file -)
//                 [--samples T] [--seed S] [--intervals 0.9,0.95]
//                 [--deterministic] [--exclude_noise] [--return_samples]
//                 [--json] [--replicas HOST:PORT,... [--ranges N]]
//   mcdrop-client health [--target HOST:PORT] [--service NAME]
//   mcdrop-client models [--target HOST:PORT] [--json]
//   mcdrop-client bench [--rpc predict|health] [--concurrency N]
//                 [--duration 10s | --requests N] [--warmup 1s] [--samples T]
//                 [--batch_rows B] [--file rows.csv] [--json] [--allow_errors]
//                 [--service_config JSON|@FILE] [--keepalive_time 1s]
//                 [--max_reconnect_backoff 1s] [--series_interval 250ms]
//   mcdrop-client eval --file data.csv [--target_column -1] [--features 0,1]
//                 [--samples T] [--batch_rows 64] [--seed 1] [--json]

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "client/evaluation.h"
#include "client/load_generator.h"
#include "client/sharded.h"
#include "client/validation.h"
#include "core/file_util.h"
#include "train/dataset.h"

ABSL_FLAG(std::string, target, "localhost:50051",
          "gRPC target of the server(s)");
ABSL_FLAG(std::string, lb, "",
          "load balancing over the target's addresses: round_robin");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "deadline of each call");
ABSL_FLAG(bool, tls, false,
          "connect over TLS, verifying the server by the system's roots "
          "(implied by --tls_ca / --tls_cert)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle to verify the server by");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate, for servers that require mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, auth_token_file, "",
          "file whose first line is the bearer token to send (else the "
          "MCDROP_AUTH_TOKEN environment variable, if set)");
ABSL_FLAG(std::string, model, "", "model name (empty: the server's default)");
ABSL_FLAG(int64_t, version, 0, "model version (0: newest)");
ABSL_FLAG(std::string, input, "",
          "rows: comma-separated values, rows separated by ';'");
ABSL_FLAG(
    std::string, file, "",
    "rows from a CSV/whitespace file ('-': stdin); a header line is skipped");
ABSL_FLAG(int, samples, 0, "T stochastic passes (0: the model's default)");
ABSL_FLAG(uint64_t, seed, 0,
          "mask seed (0: the server picks one and reports it)");
ABSL_FLAG(std::vector<std::string>, replicas, {},
          "predict: spread the T passes over these servers (HOST:PORT,...): "
          "each computes a range and the client merges them to the answer "
          "one server gives for the seed (no intervals; docs/api.md)");
ABSL_FLAG(int, ranges, 0,
          "predict with --replicas: ranges T is cut into (0: one per replica, "
          "or more so that none exceeds 100,000 passes)");
ABSL_FLAG(std::vector<std::string>, intervals, {"0.95"},
          "central interval levels (regression)");
ABSL_FLAG(bool, deterministic, false, "one pass with dropout off");
ABSL_FLAG(bool, exclude_noise, false,
          "leave 1/tau out of variance and intervals");
ABSL_FLAG(bool, return_samples, false, "ask for every pass's output");
ABSL_FLAG(bool, predictive_draws, false,
          "with --return_samples (regression): the samples are draws y = f + "
          "N(0, 1/tau) from the predictive distribution");
ABSL_FLAG(double, target_standard_error, 0,
          "predict: run passes until each mean's Monte-Carlo standard error "
          "is at most this (output units, or probability), row by row; 0: off");
ABSL_FLAG(double, target_relative_error, 0,
          "predict: as --target_standard_error, relative to the predictive "
          "std (0.01: 1% of it); 0: off");
ABSL_FLAG(int, min_samples, 0,
          "predict with a target: passes of the first round (0: 100)");
ABSL_FLAG(int, max_samples, 0,
          "predict with a target: the cap on T (0: --samples, else 10000)");
ABSL_FLAG(bool, stream, false,
          "predict through PredictStream: show the running estimates (on "
          "stderr) as the rounds of passes finish, then the answer (without "
          "--intervals)");
ABSL_FLAG(bool, json, false, "print the response as JSON");
ABSL_FLAG(bool, csv, false,
          "predict: print CSV (and the samples as a second CSV block)");
ABSL_FLAG(std::string, service, "", "health: service name ('' = whole server)");
ABSL_FLAG(std::string, rpc, "predict",
          "bench: predict, or health (the bare-RPC baseline)");
ABSL_FLAG(int, concurrency, 1, "bench: calls kept in flight");
ABSL_FLAG(std::string, api, "mcdrop.v1",
          "bench: mcdrop.v1 (Predict) or oip (the Open Inference Protocol's "
          "ModelInfer)");
ABSL_FLAG(std::string, protocol, "grpc",
          "bench: grpc, or http (OIP REST at --http_target; --target still "
          "gives the model's metadata over gRPC)");
ABSL_FLAG(std::string, http_target, "localhost:8000",
          "bench --protocol http: HOST:PORT of the HTTP/REST API");
ABSL_FLAG(bool, http_binary, false,
          "bench --protocol http: tensors in the binary tensor extension, not "
          "JSON");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "bench: measured duration");
ABSL_FLAG(int64_t, requests, 0,
          "bench: measured calls (overrides --duration when > 0)");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "bench: warm-up, not measured");
ABSL_FLAG(
    int, batch_rows, 0,
    "bench: rows per request (default 1); eval: rows per batch (default 64)");
ABSL_FLAG(bool, allow_errors, false, "bench: exit 0 even if some calls failed");
ABSL_FLAG(std::string, service_config, "",
          "gRPC service config, JSON or @FILE (load balancing, "
          "healthCheckConfig, retryPolicy; see docs/deploy.md)");
ABSL_FLAG(absl::Duration, keepalive_time, absl::ZeroDuration(),
          "ping each connection this often and drop it when a ping "
          "goes unanswered for --keepalive_timeout (finds a stopped server); "
          "0: off");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "see --keepalive_time");
ABSL_FLAG(absl::Duration, max_reconnect_backoff, absl::ZeroDuration(),
          "longest wait between reconnection attempts to a server "
          "(0: gRPC's 120 s)");
ABSL_FLAG(absl::Duration, series_interval, absl::ZeroDuration(),
          "bench: with --json, also the calls, errors and p50/p99 per "
          "interval of this length (\"series\"); 0: none");
ABSL_FLAG(std::string, calls_csv, "",
          "bench: write every measured call to this file as CSV: completion "
          "(seconds from the start), latency (seconds), code");
ABSL_FLAG(std::string, id, "",
          "feedback: the row id (a prediction's rows[b].id) of --observed");
ABSL_FLAG(std::string, observed, "",
          "feedback: what was observed for --id: the targets, "
          "comma-separated (regression), or the class (classification)");
ABSL_FLAG(int, target_column, -1,
          "eval: target column of --file (negative counts from the end)");
ABSL_FLAG(
    std::string, features, "",
    "eval: feature columns, comma-separated (default: all but the target)");

namespace {

int Fail(const absl::Status& s) {
  absl::FPrintF(stderr, "error: %s\n", s.ToString());
  return 1;
}

absl::StatusOr<mcdrop::ClientOptions> ClientOptionsFromFlags() {
  mcdrop::ClientOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.load_balancing = absl::GetFlag(FLAGS_lb);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  o.tls = absl::GetFlag(FLAGS_tls);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file);
      !path.empty()) {
    auto text = mcdrop::ReadFileToString(path);
    if (!text.ok()) return text.status();
    const absl::string_view first_line = *text;
    o.auth_token = std::string(absl::StripAsciiWhitespace(
        first_line.substr(0, first_line.find('\n'))));
    if (o.auth_token.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no token on the first line of \"", path, "\""));
    }
  } else if (const char* env = std::getenv("MCDROP_AUTH_TOKEN")) {
    o.auth_token = env;
  }
  o.service_config = absl::GetFlag(FLAGS_service_config);
  if (absl::StartsWith(o.service_config, "@")) {
    auto text = mcdrop::ReadFileToString(o.service_config.substr(1));
    if (!text.ok()) return text.status();
    o.service_config = *std::move(text);
  }
  o.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  o.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  o.max_reconnect_backoff = absl::GetFlag(FLAGS_max_reconnect_backoff);
  return o;
}

absl::StatusOr<std::unique_ptr<mcdrop::Client>> MakeClient() {
  auto o = ClientOptionsFromFlags();
  if (!o.ok()) return o.status();
  // predict --replicas: the metadata from the first replica.
  const std::vector<std::string> replicas = absl::GetFlag(FLAGS_replicas);
  if (!replicas.empty()) o->target = replicas[0];
  return mcdrop::Client::Connect(*o);
}

// predict --replicas: the request's ranges over the replicas, merged; a line
// per range on stderr.
absl::StatusOr<mcdrop::v1::PredictResponse> PredictSharded(
    const mcdrop::v1::PredictRequest& req) {
  auto o = ClientOptionsFromFlags();
  if (!o.ok()) return o.status();
  auto fleet =
      mcdrop::ShardedClient::Connect(absl::GetFlag(FLAGS_replicas), *o);
  if (!fleet.ok()) return fleet.status();
  std::vector<mcdrop::RangeReport> report;
  mcdrop::ShardOptions ranges;
  ranges.ranges = absl::GetFlag(FLAGS_ranges);
  auto resp = (*fleet)->Predict(req, ranges, &report);
  for (const mcdrop::RangeReport& r : report) {
    absl::FPrintF(stderr,
                  "passes [%d, %d): replica %d, %d call(s), %.3f s%s%s\n",
                  r.begin, r.end, r.replica, r.attempts, r.seconds,
                  r.errors.empty() ? "" : "; failed: ", r.errors);
  }
  return resp;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opt;
  opt.add_whitespace = true;
  opt.preserve_proto_field_names = true;
  opt.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opt);
  return out;
}

// The response checked against the request and the model's metadata, before
// any of it is indexed.
absl::Status CheckResponse(const mcdrop::v1::PredictResponse& response,
                           const mcdrop::v1::PredictRequest& request,
                           const mcdrop::v1::ModelMetadata& meta) {
  mcdrop::PredictExpectation expected = mcdrop::ExpectationOf(request);
  expected.task = meta.task();
  expected.outputs = meta.output_size();
  return mcdrop::ValidatePredictResponse(response, expected);
}

absl::StatusOr<Eigen::MatrixXd> ReadRows() {
  const std::string file = absl::GetFlag(FLAGS_file);
  if (!file.empty()) {
    if (file == "-") {
      std::string text((std::istreambuf_iterator<char>(std::cin)),
                       std::istreambuf_iterator<char>());
      return mcdrop::ParseTable(text, "stdin");
    }
    return mcdrop::ReadTable(file);
  }
  const std::string input = absl::GetFlag(FLAGS_input);
  if (input.empty())
    return absl::InvalidArgumentError("give rows with --input or --file");
  return mcdrop::ParseTable(absl::StrJoin(absl::StrSplit(input, ';'), "\n"),
                            "--input");
}

// " (T 431, target met)" for a row of a request with a target.
std::string RowT(const mcdrop::v1::RowPrediction& row, bool target) {
  if (!target) return "";
  return absl::StrFormat("  (T %d, target %s)", row.samples(),
                         row.target_met() ? "met" : "not met: at the cap");
}

// One line per running estimate of PredictStream, on stderr: T so far and
// the first rows' means with their standard errors.
bool PrintEstimate(const mcdrop::v1::PredictResponse& m) {
  std::string line = absl::StrFormat("[T %6d]", m.samples());
  for (int r = 0; r < m.rows_size() && r < 4; ++r) {
    const auto& row = m.rows(r);
    if (row.outputs_size() > 0) {
      absl::StrAppendFormat(&line, "  row %d: %.4f (se %.4f)", r,
                            row.outputs(0).mean(),
                            row.outputs(0).standard_error());
    } else {
      const auto& c = row.classification();
      const int k = c.predicted_class();
      absl::StrAppendFormat(
          &line, "  row %d: class %d p %.3f (se %.4f)", r, k,
          c.probabilities(k),
          k < c.standard_errors_size() ? c.standard_errors(k) : 0.0);
    }
  }
  if (m.rows_size() > 4) absl::StrAppend(&line, "  ...");
  std::fprintf(stderr, "%s\n", line.c_str());
  return true;
}

int Predict() {
  auto rows = ReadRows();
  if (!rows.ok()) return Fail(rows.status());
  auto client = MakeClient();
  if (!client.ok()) return Fail(client.status());
  mcdrop::v1::PredictRequest req;
  req.set_model(absl::GetFlag(FLAGS_model));
  req.set_version(absl::GetFlag(FLAGS_version));
  req.add_shape(rows->rows());
  req.add_shape(rows->cols());
  for (Eigen::Index r = 0; r < rows->rows(); ++r) {
    for (Eigen::Index c = 0; c < rows->cols(); ++c)
      req.add_inputs(static_cast<float>((*rows)(r, c)));
  }
  req.set_samples(absl::GetFlag(FLAGS_samples));
  req.set_seed(absl::GetFlag(FLAGS_seed));
  req.set_return_samples(absl::GetFlag(FLAGS_return_samples));
  req.set_predictive_draws(absl::GetFlag(FLAGS_predictive_draws));
  req.set_exclude_noise(absl::GetFlag(FLAGS_exclude_noise));
  if (absl::GetFlag(FLAGS_deterministic))
    req.set_mode(mcdrop::v1::DETERMINISTIC);
  const double se_abs = absl::GetFlag(FLAGS_target_standard_error),
               se_rel = absl::GetFlag(FLAGS_target_relative_error);
  const bool target = se_abs != 0 || se_rel != 0;
  if (target) {
    req.mutable_target()->set_standard_error(se_abs);
    req.mutable_target()->set_relative_error(se_rel);
    req.mutable_target()->set_min_samples(absl::GetFlag(FLAGS_min_samples));
    req.mutable_target()->set_max_samples(absl::GetFlag(FLAGS_max_samples));
  }
  auto meta = (*client)->GetModelMetadata(req.model(), req.version());
  if (!meta.ok()) return Fail(meta.status());
  // Predict with the very version described, whatever the repository loads
  // meanwhile.
  req.set_model(meta->name());
  req.set_version(meta->version());
  const bool regression = meta->task() == mcdrop::v1::REGRESSION;
  // Intervals need a fixed T in one round: not with a target, and a stream
  // would have no running estimates with them.
  // A calibrated classifier answers with conformal prediction sets at the
  // --intervals levels.
  const bool sets = !regression && meta->has_calibration() &&
                    !absl::GetFlag(FLAGS_deterministic);
  const bool sharded = !absl::GetFlag(FLAGS_replicas).empty();
  if (sharded) {
    // Intervals and sets need every pass in one place; the version is
    // pinned above.
  } else if ((regression && !target && !absl::GetFlag(FLAGS_stream)) || sets) {
    for (const std::string& l : absl::GetFlag(FLAGS_intervals)) {
      double level;
      if (!absl::SimpleAtod(l, &level)) {
        return Fail(
            absl::InvalidArgumentError("bad --intervals value \"" + l + "\""));
      }
      if (regression) {
        req.add_interval_levels(level);
      } else {
        req.add_set_levels(level);
      }
    }
  }
  auto resp = sharded ? PredictSharded(req)
              : absl::GetFlag(FLAGS_stream)
                  ? (*client)->PredictStream(req, PrintEstimate)
                  : (*client)->Predict(req);
  if (!resp.ok()) return Fail(resp.status());
  if (auto s = CheckResponse(*resp, req, *meta); !s.ok()) return Fail(s);
  if (absl::GetFlag(FLAGS_json)) {
    absl::PrintF("%s\n", ToJson(*resp));
    return 0;
  }
  if (absl::GetFlag(FLAGS_csv)) {
    if (regression) {
      std::string header = "row,output,mean,std,model_std";
      for (double l : req.interval_levels())
        absl::StrAppendFormat(&header, ",lower_%g,upper_%g", l, l);
      if (meta->has_calibration() && !req.exclude_noise() &&
          req.mode() == mcdrop::v1::MONTE_CARLO &&
          req.samples() >= meta->calibration().samples()) {
        for (double l : req.interval_levels()) {
          absl::StrAppendFormat(&header,
                                ",conformal_lower_%g,conformal_upper_%g", l, l);
        }
      }
      absl::PrintF("%s\n", header);
      for (int r = 0; r < resp->rows_size(); ++r) {
        for (int d = 0; d < resp->rows(r).outputs_size(); ++d) {
          const auto& o = resp->rows(r).outputs(d);
          std::string line =
              absl::StrFormat("%d,%d,%.9g,%.9g,%.9g", r, d, o.mean(), o.std(),
                              std::sqrt(o.model_variance()));
          for (const auto& iv : o.intervals())
            absl::StrAppendFormat(&line, ",%.9g,%.9g", iv.lower(), iv.upper());
          for (const auto& iv : o.conformal_intervals())
            absl::StrAppendFormat(&line, ",%.9g,%.9g", iv.lower(), iv.upper());
          absl::PrintF("%s\n", line);
        }
      }
    } else {
      const int C = meta->output_size();
      std::string header = "row,class";
      for (int c = 0; c < C; ++c) absl::StrAppend(&header, ",p", c);
      absl::PrintF("%s,entropy,mutual_information,variation_ratio\n", header);
      for (int r = 0; r < resp->rows_size(); ++r) {
        const auto& c = resp->rows(r).classification();
        std::string line = absl::StrFormat("%d,%d", r, c.predicted_class());
        for (double p : c.probabilities())
          absl::StrAppendFormat(&line, ",%.9g", p);
        absl::PrintF("%s,%.9g,%.9g,%.9g\n", line, c.entropy(),
                     c.mutual_information(), c.variation_ratio());
      }
    }
    if (resp->sample_shape_size() == 3) {
      absl::PrintF("\nsample,row,output,value\n");
      const int64_t T = resp->sample_shape(0), B = resp->sample_shape(1),
                    D = resp->sample_shape(2);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t r = 0; r < B; ++r) {
          for (int64_t d = 0; d < D; ++d) {
            absl::PrintF("%d,%d,%d,%.9g\n", t, r, d,
                         resp->sample_values((t * B + r) * D + d));
          }
        }
      }
    }
    return 0;
  }
  absl::PrintF(
      "model %s v%d, T = %d, seed %d, server compute %.2f ms%s\n",
      resp->model(), resp->version(), resp->samples(), resp->seed(),
      resp->compute_seconds() * 1e3,
      resp->prediction_id().empty()
          ? ""
          : absl::StrCat(", prediction ", resp->prediction_id(), " (row ids ",
                         resp->prediction_id(), ":<row>)"));
  for (int r = 0; r < resp->rows_size(); ++r) {
    const auto& row = resp->rows(r);
    if (regression) {
      for (int d = 0; d < row.outputs_size(); ++d) {
        const auto& o = row.outputs(d);
        std::string ivs;
        for (const auto& iv : o.intervals()) {
          absl::StrAppendFormat(&ivs, "  %g%%: [%.4f, %.4f]", iv.level() * 100,
                                iv.lower(), iv.upper());
        }
        for (const auto& iv : o.conformal_intervals()) {
          absl::StrAppendFormat(&ivs, "  conformal %g%%: [%.4f, %.4f]",
                                iv.level() * 100, iv.lower(), iv.upper());
        }
        absl::PrintF(
            "row %d%s  mean %.4f +- %.4f  (model std %.4f)  mean's standard "
            "error %.4f%s%s\n",
            r, row.outputs_size() > 1 ? absl::StrFormat(" output %d", d) : "",
            o.mean(), o.std(), std::sqrt(o.model_variance()),
            o.standard_error(), RowT(row, target), ivs);
      }
    } else {
      const auto& c = row.classification();
      std::vector<std::string> p;
      for (double v : c.probabilities())
        p.push_back(absl::StrFormat("%.3f", v));
      const int k = c.predicted_class();
      absl::PrintF(
          "row %d  class %d (p %.3f, standard error %.4f)  entropy %.4f  "
          "mutual information %.4f  variation ratio %.3f%s\n"
          "       probabilities [%s]\n",
          r, k, c.probabilities(k),
          k < c.standard_errors_size() ? c.standard_errors(k) : 0.0,
          c.entropy(), c.mutual_information(), c.variation_ratio(),
          RowT(row, target), absl::StrJoin(p, ", "));
      for (const auto& set : c.prediction_sets()) {
        absl::PrintF("       conformal %g%% set {%s}\n", set.level() * 100,
                     absl::StrJoin(set.classes(), ", "));
      }
    }
  }
  return 0;
}

// Requests for the load generator: rows from --file/--input, else random
// rows within the model's standardisation range (mean +- 2 std).
absl::StatusOr<std::vector<mcdrop::v1::PredictRequest>> BenchRequests(
    const mcdrop::Client& client) {
  auto meta = client.GetModelMetadata(absl::GetFlag(FLAGS_model),
                                      absl::GetFlag(FLAGS_version));
  if (!meta.ok()) return meta.status();
  const int q = meta->input_size();
  const int b = std::max(1, absl::GetFlag(FLAGS_batch_rows));
  Eigen::MatrixXd pool;
  if (!absl::GetFlag(FLAGS_file).empty() ||
      !absl::GetFlag(FLAGS_input).empty()) {
    auto rows = ReadRows();
    if (!rows.ok()) return rows.status();
    if (rows->cols() != q) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the rows have ", rows->cols(), " values, the model takes ", q));
    }
    pool = *rows;
  } else {
    std::mt19937 rng(12345);
    std::uniform_real_distribution<double> u(-2.0, 2.0);
    pool.resize(256, q);
    for (int r = 0; r < 256; ++r) {
      for (int c = 0; c < q; ++c) {
        const double mean =
            meta->input_mean_size() == q ? meta->input_mean(c) : 0.0;
        const double std =
            meta->input_std_size() == q ? meta->input_std(c) : 1.0;
        pool(r, c) = mean + std * u(rng);
      }
    }
  }
  std::vector<mcdrop::v1::PredictRequest> out;
  const int n = std::max<int>(1, static_cast<int>(pool.rows()) / b);
  for (int i = 0; i < std::min(n, 64); ++i) {
    mcdrop::v1::PredictRequest req;
    // The model's own name: the Open Inference Protocol has no default.
    req.set_model(meta->name());
    req.set_version(absl::GetFlag(FLAGS_version));
    req.add_shape(b);
    req.add_shape(q);
    for (int r = 0; r < b; ++r) {
      for (int c = 0; c < q; ++c)
        req.add_inputs(static_cast<float>(pool((i * b + r) % pool.rows(), c)));
    }
    req.set_samples(absl::GetFlag(FLAGS_samples));
    req.set_seed(absl::GetFlag(FLAGS_seed));
    if (absl::GetFlag(FLAGS_deterministic))
      req.set_mode(mcdrop::v1::DETERMINISTIC);
    out.push_back(std::move(req));
  }
  return out;
}

int Bench() {
  auto client = MakeClient();
  if (!client.ok()) return Fail(client.status());
  mcdrop::LoadOptions o;
  o.interval = absl::GetFlag(FLAGS_series_interval);
  const std::string calls_csv = absl::GetFlag(FLAGS_calls_csv);
  o.keep_calls = !calls_csv.empty();
  const std::string rpc = absl::GetFlag(FLAGS_rpc);
  if (rpc == "health") {
    o.rpc = mcdrop::LoadOptions::Rpc::kHealth;
  } else if (rpc != "predict") {
    return Fail(absl::InvalidArgumentError("--rpc is predict or health"));
  }
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.requests = absl::GetFlag(FLAGS_requests);
  o.duration = absl::GetFlag(FLAGS_duration);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  const std::string api = absl::GetFlag(FLAGS_api);
  const std::string protocol = absl::GetFlag(FLAGS_protocol);
  if ((api != "mcdrop.v1" && api != "oip") ||
      (protocol != "grpc" && protocol != "http") ||
      (protocol == "http" && api != "oip") ||
      (api == "oip" && o.rpc != mcdrop::LoadOptions::Rpc::kPredict)) {
    return Fail(absl::InvalidArgumentError(
        "--api is mcdrop.v1 or oip, --protocol grpc or http (http: --api oip "
        "only), and the OIP benchmark is of --rpc predict"));
  }
  if (api == "oip") o.rpc = mcdrop::LoadOptions::Rpc::kOipInfer;
  std::vector<mcdrop::v1::PredictRequest> requests;
  if (o.rpc != mcdrop::LoadOptions::Rpc::kHealth) {
    auto r = BenchRequests(**client);
    if (!r.ok()) return Fail(r.status());
    requests = *std::move(r);
  }
  absl::StatusOr<mcdrop::LoadReport> report;
  if (protocol == "http") {
    const std::string target = absl::GetFlag(FLAGS_http_target);
    const size_t colon = target.rfind(':');
    int port = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(target.substr(colon + 1), &port)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--http_target \"", target, "\" is not HOST:PORT")));
    }
    report = mcdrop::RunHttpLoad(target.substr(0, colon), port,
                                 (*client)->options().auth_token,
                                 absl::GetFlag(FLAGS_http_binary), o, requests);
  } else {
    report = mcdrop::RunLoad(**client, o, requests);
  }
  if (!report.ok()) return Fail(report.status());
  const mcdrop::LoadReport& r = *report;
  if (!calls_csv.empty()) {
    std::string text = "end_seconds,latency_seconds,code\n";
    for (const mcdrop::LoadCall& c : r.calls) {
      absl::StrAppendFormat(&text, "%.6f,%.6f,%s\n", c.end, c.latency, c.code);
    }
    if (absl::Status w = mcdrop::WriteFileAtomically(calls_csv, text);
        !w.ok()) {
      return Fail(w);
    }
  }
  const std::string label =
      api == "oip"
          ? absl::StrCat("oip ", protocol,
                         protocol == "http" && absl::GetFlag(FLAGS_http_binary)
                             ? " binary"
                             : "")
          : rpc;
  if (absl::GetFlag(FLAGS_json)) {
    std::string codes;
    for (const auto& [code, n] : r.codes)
      absl::StrAppend(&codes, codes.empty() ? "" : ", ", "\"", code, "\": ", n);
    absl::PrintF(
        "{\"rpc\": \"%s\", \"concurrency\": %d, \"count\": %d, \"errors\": %d, "
        "\"warmup_calls\": %d, \"seconds\": %.6f, \"requests_per_second\": "
        "%.3f, "
        "\"rows_per_second\": %.3f, \"passes_per_second\": %.3f, "
        "\"latency_seconds\": "
        "{\"min\": %.9f, \"mean\": %.9f, \"p50\": %.9f, \"p90\": %.9f, "
        "\"p99\": %.9f, "
        "\"p999\": %.9f, \"max\": %.9f}, \"codes\": {%s}, \"start_unix\": "
        "%.6f, \"series\": [%s]}\n",
        label, o.concurrency, r.count, r.errors, r.warmup_calls, r.seconds,
        r.requests_per_second, r.rows_per_second, r.passes_per_second, r.min,
        r.mean, r.p50, r.p90, r.p99, r.p999, r.max, codes, r.start_unix,
        absl::StrJoin(r.series, ", ",
                      [](std::string* out, const mcdrop::LoadInterval& i) {
                        absl::StrAppendFormat(
                            out,
                            "{\"start\": %.3f, \"count\": %d, \"errors\": "
                            "%d, \"p50\": %.6f, \"p99\": %.6f}",
                            i.start, i.count, i.errors, i.p50, i.p99);
                      }));
  } else {
    absl::PrintF(
        "%s x %d concurrent: %d calls in %.2f s (after %d warm-up calls)\n",
        label, o.concurrency, r.count, r.seconds, r.warmup_calls);
    absl::PrintF("  requests/s %.1f   rows/s %.1f   passes/s %.4g\n",
                 r.requests_per_second, r.rows_per_second, r.passes_per_second);
    absl::PrintF(
        "  latency ms: min %.3f  mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  "
        "p99.9 %.3f  max %.3f\n",
        r.min * 1e3, r.mean * 1e3, r.p50 * 1e3, r.p90 * 1e3, r.p99 * 1e3,
        r.p999 * 1e3, r.max * 1e3);
    for (const auto& [code, n] : r.codes) absl::PrintF("  %s: %d\n", code, n);
  }
  if (r.errors > 0 && !absl::GetFlag(FLAGS_allow_errors)) {
    absl::FPrintF(stderr, "error: %d of %d calls failed\n", r.errors, r.count);
    return 1;
  }
  return 0;
}

int Eval() {
  if (absl::GetFlag(FLAGS_file).empty())
    return Fail(absl::InvalidArgumentError("eval needs --file"));
  auto table = ReadRows();
  if (!table.ok()) return Fail(table.status());
  auto client = MakeClient();
  if (!client.ok()) return Fail(client.status());
  auto meta = (*client)->GetModelMetadata(absl::GetFlag(FLAGS_model),
                                          absl::GetFlag(FLAGS_version));
  if (!meta.ok()) return Fail(meta.status());
  const bool regression = meta->task() == mcdrop::v1::REGRESSION;
  std::vector<int> features;
  if (!absl::GetFlag(FLAGS_features).empty()) {
    auto f = mcdrop::ParseIntList(absl::GetFlag(FLAGS_features));
    if (!f.ok()) return Fail(f.status());
    features = *f;
  }
  auto data = mcdrop::MakeDataset(
      *table,
      regression ? mcdrop::Task::kRegression : mcdrop::Task::kClassification,
      absl::GetFlag(FLAGS_target_column), features);
  if (!data.ok()) return Fail(data.status());
  const int q = static_cast<int>(data->x.cols());
  if (q != meta->input_size()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("the file has ", q, " feature columns, the model takes ",
                     meta->input_size())));
  }
  if (regression && data->y.cols() != meta->output_size()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "the model has ", meta->output_size(), " outputs, the file gives ",
        data->y.cols(), " target per row")));
  }
  const int batch = absl::GetFlag(FLAGS_batch_rows) > 0
                        ? absl::GetFlag(FLAGS_batch_rows)
                        : 64;
  const uint64_t seed =
      absl::GetFlag(FLAGS_seed) != 0 ? absl::GetFlag(FLAGS_seed) : 1;
  mcdrop::RegressionEvaluator reg(meta->tau(), meta->output_size());
  mcdrop::ClassificationEvaluator cls(meta->output_size());
  for (int begin = 0; begin < data->size(); begin += batch) {
    const int nb = std::min(batch, data->size() - begin);
    mcdrop::v1::PredictRequest req;
    req.set_model(meta->name());
    req.set_version(meta->version());
    req.add_shape(nb);
    req.add_shape(q);
    for (int r = 0; r < nb; ++r) {
      for (int c = 0; c < q; ++c) req.add_inputs(data->x(begin + r, c));
    }
    req.set_samples(absl::GetFlag(FLAGS_samples));
    // The same seed schedule as mcdrop-train's evaluation, so both score the
    // same passes.
    req.set_seed(seed + begin);
    if (absl::GetFlag(FLAGS_deterministic))
      req.set_mode(mcdrop::v1::DETERMINISTIC);
    if (regression) {
      req.set_return_samples(true);
      for (double l : mcdrop::CoverageLevels()) req.add_interval_levels(l);
    }
    auto resp = (*client)->Predict(req);
    if (!resp.ok()) return Fail(resp.status());
    absl::Status added;
    if (regression) {
      std::vector<float> y(
          data->y.data() + static_cast<int64_t>(begin) * data->y.cols(),
          data->y.data() + static_cast<int64_t>(begin + nb) * data->y.cols());
      added = reg.Add(*resp, y);
    } else {
      added =
          cls.Add(*resp, std::vector<int>(data->labels.begin() + begin,
                                          data->labels.begin() + begin + nb));
    }
    if (!added.ok()) return Fail(added);
  }
  const bool json = absl::GetFlag(FLAGS_json);
  if (regression) {
    const mcdrop::RegressionEvaluation e = reg.Result();
    if (json) {
      std::string cov;
      for (size_t l = 0; l < e.levels.size(); ++l) {
        absl::StrAppendFormat(
            &cov, "%s{\"level\": %g, \"coverage\": %.6f, \"mean_width\": %.6f}",
            l ? ", " : "", e.levels[l], e.coverage[l], e.mean_width[l]);
      }
      absl::PrintF(
          "{\"model\": \"%s\", \"task\": \"regression\", \"n\": %d, \"rmse\": "
          "%.9f, "
          "\"log_likelihood\": %.9f, \"intervals\": [%s]}\n",
          meta->name(), e.n, e.rmse, e.log_likelihood, cov);
    } else {
      absl::PrintF(
          "%s: %d rows, T = %d\n  RMSE %.4f   test log-likelihood %.4f\n",
          meta->name(), e.n, absl::GetFlag(FLAGS_samples), e.rmse,
          e.log_likelihood);
      absl::PrintF("  interval  coverage  mean width\n");
      for (size_t l = 0; l < e.levels.size(); ++l) {
        absl::PrintF("  %5.0f%%    %6.1f%%    %.4f\n", e.levels[l] * 100,
                     e.coverage[l] * 100, e.mean_width[l]);
      }
    }
  } else {
    const mcdrop::ClassificationEvaluation e = cls.Result();
    if (json) {
      absl::PrintF(
          "{\"model\": \"%s\", \"task\": \"classification\", \"n\": %d, "
          "\"accuracy\": %.6f, "
          "\"nll\": %.6f, \"brier\": %.6f, \"ece\": %.6f, \"mean_entropy\": "
          "%.6f, "
          "\"mean_mutual_information\": %.6f}\n",
          meta->name(), e.n, e.accuracy, e.nll, e.brier, e.ece, e.mean_entropy,
          e.mean_mutual_information);
    } else {
      absl::PrintF(
          "%s: %d rows\n  accuracy %.4f  NLL %.4f  Brier %.4f  ECE (15 bins) "
          "%.4f\n"
          "  mean entropy %.4f nats  mean mutual information %.4f nats\n",
          meta->name(), e.n, e.accuracy, e.nll, e.brier, e.ece, e.mean_entropy,
          e.mean_mutual_information);
    }
  }
  return 0;
}

int Health() {
  auto client = MakeClient();
  if (!client.ok()) return Fail(client.status());
  auto status = (*client)->Health(absl::GetFlag(FLAGS_service));
  if (!status.ok()) return Fail(status.status());
  absl::PrintF(
      "%s\n",
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status));
  return *status == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int Models() {
  auto client = MakeClient();
  if (!client.ok()) return Fail(client.status());
  auto models = (*client)->ListModels();
  if (!models.ok()) return Fail(models.status());
  if (absl::GetFlag(FLAGS_json)) {
    absl::PrintF("%s\n", ToJson(*models));
    return 0;
  }
  for (const auto& m : models->models()) {
    absl::PrintF("%s v%d%s  %s  %s  dropout [%s]%s  default T %d\n  %s\n",
                 m.name(), m.version(), m.is_default() ? " (default)" : "",
                 mcdrop::v1::Task_Name(m.task()),
                 absl::StrJoin(m.layer_sizes(), "-"),
                 absl::StrJoin(m.dropout(), ", "),
                 m.task() == mcdrop::v1::REGRESSION
                     ? absl::StrFormat("  tau %g", m.tau())
                     : "",
                 m.default_samples(), m.description());
  }
  return 0;
}

// The items of `feedback`: --id with --observed, or the lines "id,value..."
// of --file (a header line whose first field is "id" is skipped).
absl::Status FeedbackItems(bool regression, mcdrop::v1::FeedbackRequest* out) {
  std::vector<std::string> lines;
  const std::string file = absl::GetFlag(FLAGS_file);
  if (!file.empty()) {
    std::string text;
    if (file == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin),
                  std::istreambuf_iterator<char>());
    } else {
      auto read = mcdrop::ReadFileToString(file);
      if (!read.ok()) return read.status();
      text = *std::move(read);
    }
    for (absl::string_view l : absl::StrSplit(text, '\n')) {
      l = absl::StripAsciiWhitespace(l);
      if (!l.empty() && !absl::StartsWith(l, "id,")) lines.emplace_back(l);
    }
  } else if (!absl::GetFlag(FLAGS_id).empty()) {
    lines.push_back(absl::StrCat(absl::GetFlag(FLAGS_id), ",",
                                 absl::GetFlag(FLAGS_observed)));
  } else {
    return absl::InvalidArgumentError(
        "give --id ID --observed VALUE(S), or --file with lines id,value...");
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    auto* item = out->add_items();
    item->set_id(std::string(absl::StripAsciiWhitespace(f[0])));
    if (f.size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", i + 1, ": no observed value after the id"));
    }
    for (size_t k = 1; k < f.size(); ++k) {
      double v;
      if (!absl::SimpleAtod(absl::StripAsciiWhitespace(f[k]), &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", i + 1, ": \"", f[k], "\" is not a number"));
      }
      if (regression) {
        item->add_targets(v);
      } else if (f.size() != 2 || v != std::floor(v) || std::abs(v) > 1e9) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", i + 1, ": a classifier takes one integer class"));
      } else {
        item->set_label(static_cast<int>(v));
      }
    }
  }
  return absl::OkStatus();
}

// Sends observations for earlier predictions, in batches of 1024, and
// prints what became of each that was not accepted.
int Feedback() {
  auto client = MakeClient();
  if (!client.ok()) return Fail(client.status());
  const std::string model = absl::GetFlag(FLAGS_model);
  auto meta = (*client)->GetModelMetadata(model, absl::GetFlag(FLAGS_version));
  if (!meta.ok()) return Fail(meta.status());
  mcdrop::v1::FeedbackRequest all;
  if (absl::Status s =
          FeedbackItems(meta->task() == mcdrop::v1::REGRESSION, &all);
      !s.ok()) {
    return Fail(s);
  }
  constexpr int kBatch = 1024;
  int accepted = 0, total = all.items_size();
  for (int from = 0; from < total; from += kBatch) {
    mcdrop::v1::FeedbackRequest req;
    req.set_model(meta->name());
    req.set_version(absl::GetFlag(FLAGS_version));
    for (int i = from; i < std::min(total, from + kBatch); ++i)
      *req.add_items() = all.items(i);
    auto resp = (*client)->Feedback(req);
    if (!resp.ok()) return Fail(resp.status());
    accepted += resp->accepted();
    if (absl::GetFlag(FLAGS_json)) {
      absl::PrintF("%s\n", ToJson(*resp));
      continue;
    }
    for (const auto& r : resp->results()) {
      if (r.outcome() == mcdrop::v1::FeedbackResult::ACCEPTED) continue;
      absl::PrintF("%s  %s: %s\n", r.id(),
                   mcdrop::v1::FeedbackResult::Outcome_Name(r.outcome()),
                   r.message());
    }
  }
  if (!absl::GetFlag(FLAGS_json)) {
    absl::PrintF("feedback for %s: %d of %d accepted\n", meta->name(), accepted,
                 total);
  }
  return accepted == total ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mcdrop-client predict|health|models|bench|eval|feedback [flags]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  // As in the server: no absl::Mutex lock-order graph outside the tests (it
  // costs the load generator CPU and memory that never returns).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string cmd = args.size() == 2 ? args[1] : "";
  if (cmd == "predict") return Predict();
  if (cmd == "health") return Health();
  if (cmd == "models") return Models();
  if (cmd == "bench") return Bench();
  if (cmd == "eval") return Eval();
  if (cmd == "feedback") return Feedback();
  absl::FPrintF(stderr, "usage: %s\n", absl::ProgramUsageMessage());
  return 2;
}
