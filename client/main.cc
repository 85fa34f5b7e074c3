// Copyright 2026 The mcdrop Authors.
//
// mcdrop-client: talks to mcdrop-server.
//
//   mcdrop-client predict [--target HOST:PORT] [--model NAME]
//                 (--input "1,2,3;4,5,6" | --file rows.csv | --file -)
//                 [--samples T] [--seed S] [--intervals 0.9,0.95]
//                 [--deterministic] [--exclude_noise] [--return_samples]
//                 [--json]
//   mcdrop-client health [--target HOST:PORT] [--service NAME]
//   mcdrop-client models [--target HOST:PORT] [--json]

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "core/dataset.h"

ABSL_FLAG(std::string, target, "localhost:50051",
          "gRPC target of the server(s)");
ABSL_FLAG(std::string, lb, "",
          "load balancing over the target's addresses: round_robin");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "deadline of each call");
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
ABSL_FLAG(std::vector<std::string>, intervals, {"0.95"},
          "central interval levels (regression)");
ABSL_FLAG(bool, deterministic, false, "one pass with dropout off");
ABSL_FLAG(bool, exclude_noise, false,
          "leave 1/tau out of variance and intervals");
ABSL_FLAG(bool, return_samples, false, "ask for every pass's output");
ABSL_FLAG(bool, json, false, "print the response as JSON");
ABSL_FLAG(std::string, service, "", "health: service name ('' = whole server)");

namespace {

int Fail(const absl::Status& s) {
  absl::FPrintF(stderr, "error: %s\n", s.ToString());
  return 1;
}

absl::StatusOr<std::unique_ptr<mcdrop::Client>> MakeClient() {
  mcdrop::ClientOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.load_balancing = absl::GetFlag(FLAGS_lb);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  return mcdrop::Client::Connect(o);
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
  req.set_exclude_noise(absl::GetFlag(FLAGS_exclude_noise));
  if (absl::GetFlag(FLAGS_deterministic))
    req.set_mode(mcdrop::v1::DETERMINISTIC);
  auto meta = (*client)->GetModelMetadata(req.model(), req.version());
  if (!meta.ok()) return Fail(meta.status());
  const bool regression = meta->task() == mcdrop::v1::REGRESSION;
  if (regression) {
    for (const std::string& l : absl::GetFlag(FLAGS_intervals)) {
      double level;
      if (!absl::SimpleAtod(l, &level)) {
        return Fail(
            absl::InvalidArgumentError("bad --intervals value \"" + l + "\""));
      }
      req.add_interval_levels(level);
    }
  }
  auto resp = (*client)->Predict(req);
  if (!resp.ok()) return Fail(resp.status());
  if (absl::GetFlag(FLAGS_json)) {
    absl::PrintF("%s\n", ToJson(*resp));
    return 0;
  }
  absl::PrintF("model %s v%d, T = %d, seed %d, server compute %.2f ms\n",
               resp->model(), resp->version(), resp->samples(), resp->seed(),
               resp->compute_seconds() * 1e3);
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
        absl::PrintF(
            "row %d%s  mean %.4f +- %.4f  (model std %.4f)%s\n", r,
            row.outputs_size() > 1 ? absl::StrFormat(" output %d", d) : "",
            o.mean(), o.std(), std::sqrt(o.model_variance()), ivs);
      }
    } else {
      const auto& c = row.classification();
      std::vector<std::string> p;
      for (double v : c.probabilities())
        p.push_back(absl::StrFormat("%.3f", v));
      absl::PrintF(
          "row %d  class %d (p %.3f)  entropy %.4f  mutual information %.4f  "
          "variation ratio %.3f\n       probabilities [%s]\n",
          r, c.predicted_class(), c.probabilities(c.predicted_class()),
          c.entropy(), c.mutual_information(), c.variation_ratio(),
          absl::StrJoin(p, ", "));
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

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mcdrop-client predict|health|models [flags]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string cmd = args.size() == 2 ? args[1] : "";
  if (cmd == "predict") return Predict();
  if (cmd == "health") return Health();
  if (cmd == "models") return Models();
  absl::FPrintF(stderr, "usage: %s\n", absl::ProgramUsageMessage());
  return 2;
}
