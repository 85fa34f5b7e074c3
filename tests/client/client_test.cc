// Copyright 2026 The mcdrop Authors.
//
// The client library, the load generator and the evaluators against a live
// server on loopback, and mcdrop-client's subcommands run as a user would,
// their output parsed and checked against a direct computation.

#include "client/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "client/evaluation.h"
#include "client/load_generator.h"
#include "core/engine.h"
#include "core/intervals.h"
#include "server/server.h"
#include "tests/testing/models.h"

namespace mcdrop {
namespace {

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << command << "\n" << out;
  return out;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions o;
    o.models = {"concrete=" + kConcrete};
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    auto s = server::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    target_ = "127.0.0.1:" + std::to_string(server_->port());
    ClientOptions co;
    co.target = target_;
    auto c = Client::Connect(co);
    ASSERT_TRUE(c.ok());
    client_ = *std::move(c);
  }
  double Served(const std::string& code) {
    const std::string text = server_->metrics().Text();
    const std::string key = "mcdrop_requests_total{api=\"mcdrop.v1\",code=\"" +
                            code + "\",model=\"concrete\",protocol=\"grpc\"} ";
    const size_t at = text.find(key);
    return at == std::string::npos ? NAN
                                   : std::stod(text.substr(at + key.size()));
  }
  static v1::PredictRequest Row(int width = 8) {
    v1::PredictRequest r;
    r.add_shape(1);
    r.add_shape(width);
    for (float v : {540.f, 0.f, 0.f, 162.f, 2.5f, 1040.f, 676.f, 28.f}) {
      if (r.inputs_size() < width) r.add_inputs(v);
    }
    r.set_samples(100);
    return r;
  }
  std::unique_ptr<server::Server> server_;
  std::string target_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, LibraryCallsWork) {
  auto health = client_->Health();
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  auto models = client_->ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->models(0).name(), "concrete");
  EXPECT_EQ(models->models(0).input_mean_size(), 8);
  auto resp = client_->Predict(Row());
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->rows(0).outputs_size(), 1);
  auto bad = client_->Predict(Row(3));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, LoadGeneratorCountsEveryRequestExactlyOnce) {
  LoadOptions o;
  o.concurrency = 8;
  o.requests = 300;
  o.warmup = absl::Milliseconds(200);
  auto r = RunLoad(*client_, o, {Row()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->count, 300);
  EXPECT_EQ(r->errors, 0);
  EXPECT_EQ(r->codes.at("OK"), 300);
  EXPECT_GT(r->warmup_calls, 0);
  // The server answered exactly the warm-up calls plus the measured ones.
  EXPECT_EQ(Served("OK"), r->warmup_calls + 300);
  EXPECT_LE(r->min, r->p50);
  EXPECT_LE(r->p50, r->p90);
  EXPECT_LE(r->p90, r->p99);
  EXPECT_LE(r->p99, r->p999);
  EXPECT_LE(r->p999, r->max);
  EXPECT_NEAR(r->requests_per_second, 300 / r->seconds, 1e-6);
  EXPECT_NEAR(r->passes_per_second, 300 * 100 / r->seconds, 1e-3);
}

TEST_F(ClientTest, LoadGeneratorReportsFailures) {
  LoadOptions o;
  o.concurrency = 4;
  o.requests = 50;
  o.warmup = absl::ZeroDuration();
  auto r = RunLoad(*client_, o, {Row(3)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 50);
  EXPECT_EQ(r->errors, 50);
  EXPECT_EQ(r->codes.at("INVALID_ARGUMENT"), 50);
  EXPECT_EQ(Served("INVALID_ARGUMENT"), 50);
}

TEST_F(ClientTest, HealthLoadIsTheBareRpcBaseline) {
  LoadOptions o;
  o.rpc = LoadOptions::Rpc::kHealth;
  o.concurrency = 2;
  o.requests = 200;
  o.warmup = absl::ZeroDuration();
  auto r = RunLoad(*client_, o, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 200);
  EXPECT_EQ(r->codes.at("OK"), 200);
  EXPECT_EQ(Served("OK"), 0);  // no Predict was made
}

// The paper's log-likelihood, written out independently of the library.
double DirectLogLikelihood(const std::vector<double>& ys, double y,
                           double tau) {
  double m = -INFINITY;
  for (double v : ys) m = std::max(m, -0.5 * tau * (y - v) * (y - v));
  double s = 0;
  for (double v : ys) s += std::exp(-0.5 * tau * (y - v) * (y - v) - m);
  return m + std::log(s) - std::log(ys.size()) - 0.5 * std::log(2 * M_PI) +
         0.5 * std::log(tau);
}

TEST_F(ClientTest, RegressionEvaluatorMatchesADirectComputation) {
  v1::PredictRequest req;
  RowMajorMatrixXf x(5, 8);
  for (int r = 0; r < 5; ++r) {
    x.row(r) << 540 - 40 * r, 10 * r, 0, 162 + 5 * r, 2.5, 1040, 676,
        28 + 30 * r;
  }
  req.add_shape(5);
  req.add_shape(8);
  for (int i = 0; i < 40; ++i) req.add_inputs(x.data()[i]);
  req.set_samples(400);
  req.set_seed(3);
  req.set_return_samples(true);
  for (double l : CoverageLevels()) req.add_interval_levels(l);
  auto resp = client_->Predict(req);
  ASSERT_TRUE(resp.ok());
  const std::vector<float> y = {60, 45, 52, 38, 70};
  const double tau = 0.075;
  RegressionEvaluator ev(tau, 1);
  ASSERT_TRUE(ev.Add(*resp, y).ok());
  const RegressionEvaluation e = ev.Result();
  double sq = 0, ll = 0;
  std::vector<double> covered(4, 0);
  for (int r = 0; r < 5; ++r) {
    std::vector<double> ys;
    for (int t = 0; t < 400; ++t) ys.push_back(resp->sample_values(t * 5 + r));
    double mean = 0;
    for (double v : ys) mean += v / 400;
    sq += (y[r] - mean) * (y[r] - mean);
    ll += DirectLogLikelihood(ys, y[r], tau);
    IntervalScratch scratch;
    for (int l = 0; l < 4; ++l) {
      std::vector<float> fs(ys.begin(), ys.end());
      const IntervalBounds b = PredictiveInterval(
          fs.data(), 1, 400, 1 / tau, CoverageLevels()[l], &scratch);
      covered[l] += (y[r] >= b.lower && y[r] <= b.upper);
    }
  }
  EXPECT_EQ(e.n, 5);
  EXPECT_NEAR(e.rmse, std::sqrt(sq / 5), 1e-6);
  EXPECT_NEAR(e.log_likelihood, ll / 5, 1e-9);
  for (int l = 0; l < 4; ++l)
    EXPECT_DOUBLE_EQ(e.coverage[l], covered[l] / 5) << l;
}

TEST(ClassificationEvaluatorTest, HandComputedScores) {
  v1::PredictResponse resp;
  resp.set_task(v1::CLASSIFICATION);
  auto add = [&](std::vector<double> p, int cls, double h, double mi) {
    auto* c = resp.add_rows()->mutable_classification();
    for (double v : p) c->add_probabilities(v);
    c->set_predicted_class(cls);
    c->set_entropy(h);
    c->set_mutual_information(mi);
  };
  add({0.9, 0.1}, 0, 0.3, 0.01);  // right, confidence 0.9 (bin 13)
  add({0.2, 0.8}, 1, 0.5, 0.02);  // wrong (label 0), confidence 0.8 (bin 12)
  add({0.6, 0.4}, 0, 0.7, 0.03);  // right, confidence 0.6 (bin 9)
  ClassificationEvaluator ev(2);
  ASSERT_TRUE(ev.Add(resp, {0, 0, 0}).ok());
  const ClassificationEvaluation e = ev.Result();
  EXPECT_NEAR(e.accuracy, 2.0 / 3, 1e-12);
  EXPECT_NEAR(e.nll, -(std::log(0.9) + std::log(0.2) + std::log(0.6)) / 3,
              1e-12);
  EXPECT_NEAR(e.brier, (0.01 + 0.01 + 0.64 + 0.64 + 0.16 + 0.16) / 3, 1e-12);
  EXPECT_NEAR(e.ece,
              (std::abs(1 - 0.9) + std::abs(0 - 0.8) + std::abs(1 - 0.6)) / 3,
              1e-12);
  EXPECT_NEAR(e.mean_entropy, 0.5, 1e-12);
  EXPECT_NEAR(e.mean_mutual_information, 0.02, 1e-12);
}

TEST_F(ClientTest, CliPredictBenchAndEvalOutputsParseAndMatch) {
  const std::string cli = MCDROP_CLIENT;
  // predict --json equals the engine called directly with the same seed.
  auto j = nlohmann::json::parse(RunCommand(
      cli + " predict --target " + target_ +
      " --input 540,0,0,162,2.5,1040,676,28 --samples 300 --seed 11 --json"));
  auto model = Model::Load(kConcrete);
  ASSERT_TRUE(model.ok());
  Engine engine({.threads = 1});
  float x[8] = {540, 0, 0, 162, 2.5, 1040, 676, 28};
  PredictOptions opt;
  opt.samples = 300;
  opt.seed = 11;
  auto p = engine.Predict(*model, InputMatrix(x, 1, 8), opt);
  ASSERT_TRUE(p.ok());
  EXPECT_DOUBLE_EQ(j["rows"][0]["outputs"][0]["mean"].get<double>(),
                   p->Mean(0, 0));
  EXPECT_DOUBLE_EQ(j["rows"][0]["outputs"][0]["variance"].get<double>(),
                   p->Variance(0, 0));

  // bench --json counts exactly the requests asked for.
  auto b = nlohmann::json::parse(RunCommand(
      cli + " bench --target " + target_ +
      " --requests 120 --concurrency 4 --warmup 0s --samples 50 --json"));
  EXPECT_EQ(b["count"].get<int>(), 120);
  EXPECT_EQ(b["errors"].get<int>(), 0);
  EXPECT_EQ(b["codes"]["OK"].get<int>(), 120);
  EXPECT_GT(b["requests_per_second"].get<double>(), 0);
  EXPECT_LE(b["latency_seconds"]["p50"].get<double>(),
            b["latency_seconds"]["p99"].get<double>());

  // eval --json on a labelled file equals the same computation done here
  // through the engine with eval's seed schedule (seed + first row of batch).
  const std::string csv = ::testing::TempDir() + "/eval.csv";
  RowMajorMatrixXf rows(70, 8);
  std::vector<float> y(70);
  {
    std::ofstream f(csv);
    f << "cement,slag,ash,water,sp,coarse,fine,age,strength\n";
    for (int r = 0; r < 70; ++r) {
      rows.row(r) << 300 + 3 * r, r % 7 * 20, 0, 180, 3, 1000, 700, 7 + r * 3;
      y[r] = 20 + 0.5f * r;
      for (int c = 0; c < 8; ++c) f << rows(r, c) << ",";
      f << y[r] << "\n";
    }
  }
  auto e = nlohmann::json::parse(RunCommand(cli + " eval --target " + target_ +
                                            " --file " + csv +
                                            " --samples 200 --json"));
  EXPECT_EQ(e["n"].get<int>(), 70);
  double sq = 0, ll = 0;
  for (int begin = 0; begin < 70; begin += 64) {
    const int nb = std::min(64, 70 - begin);
    PredictOptions o;
    o.samples = 200;
    o.seed = 1 + begin;
    o.return_samples = true;
    auto q =
        engine.Predict(*model, InputMatrix(rows.row(begin).data(), nb, 8), o);
    ASSERT_TRUE(q.ok());
    for (int r = 0; r < nb; ++r) {
      sq += std::pow(y[begin + r] - q->Mean(r, 0), 2);
      std::vector<double> ys;
      for (int t = 0; t < 200; ++t) ys.push_back(q->Sample(t, r, 0));
      ll += DirectLogLikelihood(ys, y[begin + r], model->tau());
    }
  }
  EXPECT_NEAR(e["rmse"].get<double>(), std::sqrt(sq / 70), 1e-6);
  EXPECT_NEAR(e["log_likelihood"].get<double>(), ll / 70, 1e-6);
  ASSERT_EQ(e["intervals"].size(), 4u);
  for (const auto& iv : e["intervals"]) {
    EXPECT_GE(iv["coverage"].get<double>(), 0.0);
    EXPECT_LE(iv["coverage"].get<double>(), 1.0);
    EXPECT_GT(iv["mean_width"].get<double>(), 0.0);
  }
}

}  // namespace
}  // namespace mcdrop
