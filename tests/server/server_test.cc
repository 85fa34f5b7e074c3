// Copyright 2026 The mcdrop Authors.
//
// Integration tests: the real server on an ephemeral loopback port, called
// through the generated stub, checked against the engine called directly.

#include "server/server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <random>
#include <regex>
#include <thread>

#include "client/client.h"
#include "core/intervals.h"
#include "tests/testing/metrics.h"
#include "tests/testing/models.h"

namespace mcdrop::server {
namespace {

using ::testing::HasSubstr;
using testing::Metric;
using testing::Scrape;
using v1::PredictRequest;
using v1::PredictResponse;

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

std::string ClassifierPath() {
  static const std::string path = [] {
    const std::string p = ::testing::TempDir() + "/digits_like.safetensors";
    auto m = Model::Create(testing::RandomSpec({16, 32, 5}, {0.1f, 0.3f},
                                               Task::kClassification,
                                               Activation::kRelu, 3));
    EXPECT_TRUE(m.ok() && m->Save(p).ok());
    return p;
  }();
  return path;
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(Limits limits = {}, std::string precision = "") {
    server_.reset();
    ServerOptions o;
    o.precision = precision;
    o.models = {"concrete=" + kConcrete, "digits=" + ClassifierPath()};
    o.host = "127.0.0.1";
    o.port = 0;
    o.metrics_address = "127.0.0.1:0";
    o.threads = 2;
    o.limits = limits;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel_);
    ClientOptions co;
    co.target = "127.0.0.1:" + std::to_string(server_->port());
    auto c = Client::Connect(co);
    ASSERT_TRUE(c.ok());
    client_ = *std::move(c);
  }
  void SetUp() override { StartServer(); }

  grpc::Status Call(const PredictRequest& req, PredictResponse* resp,
                    absl::Duration timeout = absl::Seconds(30)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(timeout));
    return stub_->Predict(&ctx, req, resp);
  }

  static PredictRequest Request(const std::string& model,
                                const RowMajorMatrixXf& x, int T,
                                uint64_t seed) {
    PredictRequest r;
    r.set_model(model);
    r.add_shape(x.rows());
    r.add_shape(x.cols());
    for (Eigen::Index i = 0; i < x.size(); ++i) r.add_inputs(x.data()[i]);
    r.set_samples(T);
    r.set_seed(seed);
    return r;
  }

  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<Client> client_;
};

RowMajorMatrixXf ConcreteRows() {
  RowMajorMatrixXf x(3, 8);
  x << 540, 0, 0, 162, 2.5, 1040, 676, 28,     //
      332.5, 142.5, 0, 228, 0, 932, 594, 270,  //
      198.6, 132.4, 0, 192, 0, 978.4, 825.5, 90;
  return x;
}

TEST_F(ServerTest, RegressionMatchesTheEngine) {
  const RowMajorMatrixXf x = ConcreteRows();
  PredictRequest req = Request("concrete", x, 500, 42);
  req.add_interval_levels(0.9);
  req.set_return_samples(true);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.model(), "concrete");
  EXPECT_EQ(resp.version(), 1);
  EXPECT_EQ(resp.task(), v1::REGRESSION);
  EXPECT_EQ(resp.samples(), 500);
  EXPECT_EQ(resp.seed(), 42u);
  EXPECT_GE(resp.compute_seconds(), 0);

  auto model = Model::Load(kConcrete);
  ASSERT_TRUE(model.ok());
  Engine engine({.threads = 1});
  PredictOptions opt;
  opt.samples = 500;
  opt.seed = 42;
  opt.return_samples = true;
  auto p = engine.Predict(*model, InputMatrix(x.data(), 3, 8), opt);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(resp.rows_size(), 3);
  IntervalScratch scratch;
  for (int r = 0; r < 3; ++r) {
    const auto& o = resp.rows(r).outputs(0);
    EXPECT_EQ(o.mean(),
              p->Mean(r, 0));  // bit-identical: same engine, same seed
    EXPECT_EQ(o.variance(), p->Variance(r, 0));
    EXPECT_EQ(o.model_variance(), p->model_variance[r]);
    EXPECT_DOUBLE_EQ(o.std(), std::sqrt(p->Variance(r, 0)));
    const IntervalBounds b = PredictiveInterval(
        p->sample_values.data() + r, 3, 500, 1.0 / model->tau(), 0.9, &scratch);
    ASSERT_EQ(o.intervals_size(), 1);
    EXPECT_EQ(o.intervals(0).level(), 0.9);
    EXPECT_DOUBLE_EQ(o.intervals(0).lower(), b.lower);
    EXPECT_DOUBLE_EQ(o.intervals(0).upper(), b.upper);
  }
  ASSERT_EQ(resp.sample_shape_size(), 3);
  EXPECT_EQ(resp.sample_shape(0), 500);
  EXPECT_EQ(resp.sample_shape(1), 3);
  EXPECT_EQ(resp.sample_shape(2), 1);
  for (int i = 0; i < 1500; ++i)
    ASSERT_EQ(resp.sample_values(i), p->sample_values[i]);
}

TEST_F(ServerTest, ClassificationMatchesTheEngine) {
  const RowMajorMatrixXf x = testing::RandomInputs(4, 16, 8);
  PredictResponse resp;
  ASSERT_TRUE(Call(Request("digits", x, 200, 9), &resp).ok());
  EXPECT_EQ(resp.task(), v1::CLASSIFICATION);
  auto model = Model::Load(ClassifierPath());
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 200;
  opt.seed = 9;
  auto p = engine.Predict(*model, InputMatrix(x.data(), 4, 16), opt);
  ASSERT_TRUE(p.ok());
  for (int r = 0; r < 4; ++r) {
    const auto& c = resp.rows(r).classification();
    ASSERT_EQ(c.probabilities_size(), 5);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(c.probabilities(k), p->Mean(r, k));
    EXPECT_EQ(c.predicted_class(), p->predicted_class[r]);
    EXPECT_EQ(c.entropy(), p->entropy[r]);
    EXPECT_EQ(c.mutual_information(), p->mutual_information[r]);
    EXPECT_EQ(c.variation_ratio(), p->variation_ratio[r]);
  }
}

// --precision bf16 serves every model in bf16: the metadata says so and the
// answer equals the engine's on the bf16 model, close to (not equal to) f32.
TEST_F(ServerTest, PrecisionOverride) {
  const RowMajorMatrixXf x = testing::RandomInputs(2, 16, 8);
  PredictResponse f32;
  ASSERT_TRUE(Call(Request("digits", x, 200, 9), &f32).ok());
  EXPECT_EQ(client_->GetModelMetadata("digits")->precision(), "f32");
  StartServer({}, "bf16");
  EXPECT_EQ(client_->GetModelMetadata("digits")->precision(), "bf16");
  PredictResponse bf16;
  ASSERT_TRUE(Call(Request("digits", x, 200, 9), &bf16).ok());
  auto model = Model::Load(ClassifierPath());
  ASSERT_TRUE(model.ok());
  auto rounded = model->WithPrecision(Precision::kBf16);
  ASSERT_TRUE(rounded.ok());
  Engine engine({.threads = 1});
  PredictOptions opt;
  opt.samples = 200;
  opt.seed = 9;
  auto p = engine.Predict(*rounded, InputMatrix(x.data(), 2, 16), opt);
  ASSERT_TRUE(p.ok());
  bool differs = false;
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < p->outputs; ++c) {
      const double got = bf16.rows(r).classification().probabilities(c);
      EXPECT_EQ(got, p->Mean(r, c));
      EXPECT_NEAR(got, f32.rows(r).classification().probabilities(c), 0.05);
      differs |= got != f32.rows(r).classification().probabilities(c);
    }
  }
  EXPECT_TRUE(differs);
  ServerOptions bad;
  bad.models = {"concrete=" + kConcrete};
  bad.precision = "fp8";
  EXPECT_EQ(Server::Start(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, SeedsReproduceOverTheWire) {
  const RowMajorMatrixXf x = ConcreteRows();
  PredictResponse a, b, fresh, again;
  ASSERT_TRUE(Call(Request("concrete", x, 300, 5), &a).ok());
  ASSERT_TRUE(Call(Request("concrete", x, 300, 5), &b).ok());
  EXPECT_EQ(a.SerializeAsString().size(), b.SerializeAsString().size());
  for (int r = 0; r < 3; ++r)
    EXPECT_EQ(a.rows(r).outputs(0).mean(), b.rows(r).outputs(0).mean());
  // Seed 0: the server picks one, reports it, and it reproduces the answer.
  ASSERT_TRUE(Call(Request("", x, 300, 0), &fresh).ok());
  EXPECT_NE(fresh.seed(), 0u);
  EXPECT_EQ(fresh.model(), "concrete");  // the default model
  ASSERT_TRUE(Call(Request("concrete", x, 300, fresh.seed()), &again).ok());
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(fresh.rows(r).outputs(0).mean(), again.rows(r).outputs(0).mean());
    EXPECT_EQ(fresh.rows(r).outputs(0).variance(),
              again.rows(r).outputs(0).variance());
  }
  EXPECT_NE(a.rows(0).outputs(0).mean(), fresh.rows(0).outputs(0).mean());
}

TEST_F(ServerTest, DeterministicModeIsOnePassWithDropoutOff) {
  const RowMajorMatrixXf x = ConcreteRows();
  PredictRequest req = Request("concrete", x, 0, 1);
  req.set_mode(v1::DETERMINISTIC);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.samples(), 1);
  auto model = Model::Load(kConcrete);
  const std::vector<double> ref =
      testing::ReferencePass(*model, &x(1, 0), 1, 0, 0, false);
  EXPECT_NEAR(resp.rows(1).outputs(0).mean(), ref[0], 1e-4);
  EXPECT_EQ(resp.rows(1).outputs(0).model_variance(), 0.0);
}

struct BadCase {
  std::string name;
  std::function<void(PredictRequest&)> mutate;
  grpc::StatusCode code;
  std::string message;
};

TEST_F(ServerTest, BadInputGetsAClearErrorAndServingContinues) {
  const std::vector<BadCase> cases = {
      {"wrong width", [](PredictRequest& r) { r.set_shape(1, 7); },
       grpc::StatusCode::INVALID_ARGUMENT, "takes 8 values per row, not 7"},
      {"empty batch",
       [](PredictRequest& r) {
         r.set_shape(0, 0);
         r.clear_inputs();
       },
       grpc::StatusCode::INVALID_ARGUMENT, "empty"},
      {"values do not fill the shape",
       [](PredictRequest& r) { r.mutable_inputs()->RemoveLast(); },
       grpc::StatusCode::INVALID_ARGUMENT, "needs 24 input values, got 23"},
      {"no shape", [](PredictRequest& r) { r.clear_shape(); },
       grpc::StatusCode::INVALID_ARGUMENT, "shape must be"},
      {"NaN", [](PredictRequest& r) { r.set_inputs(9, NAN); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "row 1 column 1 is not a finite number"},
      {"infinity", [](PredictRequest& r) { r.set_inputs(0, INFINITY); },
       grpc::StatusCode::INVALID_ARGUMENT, "not a finite number"},
      {"T over the limit", [](PredictRequest& r) { r.set_samples(5000); },
       grpc::StatusCode::INVALID_ARGUMENT, "exceed the server's limit of 2000"},
      {"negative T", [](PredictRequest& r) { r.set_samples(-4); },
       grpc::StatusCode::INVALID_ARGUMENT, "samples must be >= 0"},
      {"too many rows",
       [](PredictRequest& r) {
         r.set_shape(0, 20);
         for (int i = 0; i < 17 * 8; ++i) r.add_inputs(1);
       },
       grpc::StatusCode::INVALID_ARGUMENT,
       "exceed the server's limit of 10 rows"},
      {"bad interval", [](PredictRequest& r) { r.add_interval_levels(1.5); },
       grpc::StatusCode::INVALID_ARGUMENT, "interval level 1.5"},
      {"unknown model", [](PredictRequest& r) { r.set_model("nope"); },
       grpc::StatusCode::NOT_FOUND, "no model named \"nope\""},
      {"unknown version", [](PredictRequest& r) { r.set_version(7); },
       grpc::StatusCode::NOT_FOUND, "no version 7"},
  };
  server_.reset();
  Limits limits;
  limits.max_samples = 2000;
  limits.max_batch_rows = 10;
  StartServer(limits);
  const PredictRequest good = Request("concrete", ConcreteRows(), 100, 3);
  for (const BadCase& c : cases) {
    PredictRequest bad = good;
    c.mutate(bad);
    PredictResponse resp;
    grpc::Status s = Call(bad, &resp);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.name;
    PredictResponse ok;
    EXPECT_TRUE(Call(good, &ok).ok()) << "after " << c.name;
  }
}

TEST_F(ServerTest, DeadlineStopsAHugeRequestPromptly) {
  // 512 rows x T = 100000: 51M passes, several seconds on two cores.
  RowMajorMatrixXf x(512, 8);
  for (int r = 0; r < 512; ++r) x.row(r) = ConcreteRows().row(r % 3);
  PredictResponse resp;
  const absl::Time start = absl::Now();
  grpc::Status s =
      Call(Request("concrete", x, 100000, 1), &resp, absl::Milliseconds(100));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(took, absl::Seconds(1));
  // No work continues for it: the engine goes idle and the request is
  // counted once, within a moment. Counted as DEADLINE_EXCEEDED when the
  // server's deadline check stops it, or as CANCELLED when the client's
  // cancellation at its own deadline arrives first: the server's deadline
  // is the client's plus the time the request took to arrive, so on a
  // loaded machine the two race (seen in CI: CANCELLED 1, DEADLINE_EXCEEDED
  // 0). Nothing else may count it.
  bool idle = false;
  double deadline = 0, cancelled = 0;
  for (int i = 0; i < 200 && !(idle && deadline + cancelled == 1); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    idle = server_->engine().busy_threads() == 0 &&
           server_->engine().queued_tasks() == 0;
    const std::string text = Scrape(server_->metrics_ports().at(0));
    deadline = Metric(text, "mcdrop_requests_total",
                      "code=\"DEADLINE_EXCEEDED\",model=\"concrete\"");
    cancelled = Metric(text, "mcdrop_requests_total",
                       "code=\"CANCELLED\",model=\"concrete\"");
  }
  EXPECT_TRUE(idle);
  EXPECT_EQ(deadline + cancelled, 1);
  EXPECT_EQ(
      Metric(Scrape(server_->metrics_ports().at(0)),
             "mcdrop_request_duration_seconds_count", "model=\"concrete\""),
      1);
}

TEST_F(ServerTest, AdmissionLimitAnswersResourceExhausted) {
  server_.reset();
  Limits limits;
  limits.max_inflight = 1;
  StartServer(limits);
  RowMajorMatrixXf x(64, 8);
  for (int r = 0; r < 64; ++r) x.row(r) = ConcreteRows().row(r % 3);
  // One long request holds the only slot...
  std::thread long_call([&] {
    PredictResponse resp;
    EXPECT_TRUE(Call(Request("concrete", x, 30000, 1), &resp).ok());
  });
  for (int i = 0; i < 200 && server_->engine().busy_threads() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  // ... so the next one is refused at once.
  PredictResponse resp;
  const absl::Time start = absl::Now();
  grpc::Status s = Call(Request("concrete", ConcreteRows(), 10, 1), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("limit of 1 requests in flight"));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  long_call.join();
  EXPECT_TRUE(Call(Request("concrete", ConcreteRows(), 10, 1), &resp).ok());
}

TEST_F(ServerTest, HealthTurnsNotServingWhileDraining) {
  auto status = client_->Health();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(*client_->Health("mcdrop.v1.Inference"),
            grpc::health::v1::HealthCheckResponse::SERVING);
  server_->StartDraining();
  EXPECT_EQ(*client_->Health(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(*client_->Health("mcdrop.v1.Inference"),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  PredictResponse resp;
  EXPECT_EQ(
      Call(Request("concrete", ConcreteRows(), 10, 1), &resp).error_code(),
      grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, DrainLeavesTheBalancersBeforeRefusingCalls) {
  // SIGTERM with --drain_delay: health says NOT_SERVING at once, while calls
  // are still answered until the delay has passed; then the server stops.
  std::thread drain(
      [this] { server_->Drain(absl::Milliseconds(1500), absl::Seconds(1)); });
  const absl::Time start = absl::Now();
  while (absl::Now() - start < absl::Seconds(1) &&
         *client_->Health("mcdrop.v1.Inference") !=
             grpc::health::v1::HealthCheckResponse::NOT_SERVING) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(*client_->Health(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(*client_->Health("mcdrop.v1.Inference"),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  PredictResponse resp;
  EXPECT_TRUE(Call(Request("concrete", ConcreteRows(), 10, 1), &resp).ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1000));
  drain.join();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1500));
  EXPECT_FALSE(Call(Request("concrete", ConcreteRows(), 10, 1), &resp,
                    absl::Milliseconds(500))
                   .ok());
}

TEST_F(ServerTest, RetryAttemptsOfAClientRetryPolicyAreCounted) {
  // A client whose retry policy retries UNAVAILABLE four times: a draining
  // server refuses all five attempts and counts the four retries by the
  // attempts before each (grpc-previous-rpc-attempts).
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(R"({"methodConfig": [{
      "name": [{"service": "mcdrop.v1.Inference"}],
      "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.01s",
                      "maxBackoff": "0.01s", "backoffMultiplier": 1,
                      "retryableStatusCodes": ["UNAVAILABLE"]}}]})");
  auto stub = v1::Inference::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                grpc::InsecureChannelCredentials(), args));
  PredictResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(
        stub->Predict(&ctx, Request("concrete", ConcreteRows(), 10, 1), &resp)
            .ok());
  }
  server_->StartDraining();
  grpc::ClientContext ctx;
  EXPECT_EQ(
      stub->Predict(&ctx, Request("concrete", ConcreteRows(), 10, 1), &resp)
          .error_code(),
      grpc::StatusCode::UNAVAILABLE);
  const std::string text = Scrape(server_->metrics_ports().at(0));
  for (const char* previous : {"1", "2", "3", "4+"}) {
    EXPECT_EQ(Metric(text, "mcdrop_retry_attempts_total",
                     std::string("api=\"mcdrop.v1\",previous_attempts=\"") +
                         previous + "\""),
              1)
        << previous;
  }
  EXPECT_EQ(Metric(text, "mcdrop_requests_total",
                   "code=\"UNAVAILABLE\",api=\"mcdrop.v1\""),
            5);
}

// A small convolutional classifier (format v2) on 1 x 6 x 6 images.
std::string ConvClassifierPath() {
  static const std::string path = [] {
    std::mt19937 rng(4);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    auto random = [&](int r, int c) {
      return Eigen::MatrixXf(
          Eigen::MatrixXf::NullaryExpr(r, c, [&] { return normal(rng); }));
    };
    ModelSpec spec;
    spec.task = Task::kClassification;
    spec.input_shape = {1, 6, 6};
    LayerDef conv;
    conv.kind = LayerKind::kConv2d;
    conv.out = 2;
    conv.kernel = {3, 3};
    conv.weight = random(2, 9);
    conv.bias = Eigen::VectorXf::Zero(2);
    LayerDef relu;
    relu.kind = LayerKind::kActivation;
    relu.activation = Activation::kRelu;
    LayerDef pool;
    pool.kind = LayerKind::kMaxPool2d;
    pool.kernel = pool.stride = {2, 2};
    LayerDef flatten, drop, dense;
    flatten.kind = LayerKind::kFlatten;
    drop.kind = LayerKind::kDropout;
    drop.rate = 0.3f;
    dense.kind = LayerKind::kDense;
    dense.out = 3;
    dense.weight = random(3, 8);
    dense.bias = Eigen::VectorXf::Zero(3);
    spec.graph = {conv, relu, pool, flatten, drop, dense};
    const std::string p = ::testing::TempDir() + "/conv.safetensors";
    auto m = Model::Create(spec);
    EXPECT_TRUE(m.ok() && m->Save(p).ok()) << m.status();
    return p;
  }();
  return path;
}

// Images as [rows, C, H, W], [C, H, W] or flat rows give the engine's
// answer; the metadata describes the layer list.
TEST(ConvModelServerTest, ImagesInAnyAcceptedShape) {
  ServerOptions o;
  o.models = {"conv=" + ConvClassifierPath()};
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_address = "127.0.0.1:0";
  o.threads = 2;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                          grpc::InsecureChannelCredentials()));
  const RowMajorMatrixXf x = testing::RandomInputs(2, 36, 3);
  auto model = Model::Load(ConvClassifierPath());
  ASSERT_TRUE(model.ok()) << model.status();
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 50;
  opt.seed = 8;
  auto want = engine.Predict(*model, InputMatrix(x.data(), 2, 36), opt);
  ASSERT_TRUE(want.ok());
  auto call = [&](std::vector<int64_t> shape, int rows, PredictResponse* r) {
    PredictRequest req;
    for (int64_t d : shape) req.add_shape(d);
    for (int i = 0; i < rows * 36; ++i) req.add_inputs(x.data()[i]);
    req.set_samples(50);
    req.set_seed(8);
    grpc::ClientContext ctx;
    return stub->Predict(&ctx, req, r);
  };
  for (const auto& shape :
       std::vector<std::vector<int64_t>>{{2, 1, 6, 6}, {2, 36}}) {
    PredictResponse resp;
    ASSERT_TRUE(call(shape, 2, &resp).ok());
    for (int r = 0; r < 2; ++r) {
      for (int k = 0; k < 3; ++k) {
        EXPECT_EQ(resp.rows(r).classification().probabilities(k),
                  want->Mean(r, k));
      }
    }
  }
  PredictResponse one;
  ASSERT_TRUE(call({1, 6, 6}, 1, &one).ok());
  EXPECT_EQ(one.rows(0).classification().probabilities(0), want->Mean(0, 0));
  PredictResponse bad;
  grpc::Status s = call({2, 1, 6, 5}, 2, &bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("expected [rows, 1, 6, 6], [1, 6, 6] for one image"));

  grpc::ClientContext ctx;
  v1::GetModelMetadataRequest mreq;
  v1::ModelMetadata meta;
  ASSERT_TRUE(stub->GetModelMetadata(&ctx, mreq, &meta).ok());
  EXPECT_THAT(
      std::vector<int>(meta.input_shape().begin(), meta.input_shape().end()),
      ::testing::ElementsAre(1, 6, 6));
  EXPECT_EQ(meta.format(), "mcdrop.v2");
  EXPECT_THAT(meta.layers(), HasSubstr("\"type\":\"conv2d\""));
  EXPECT_EQ(meta.input_size(), 36);
  EXPECT_EQ(meta.activation(), "");
}

TEST_F(ServerTest, MetadataAndListModels) {
  auto list = client_->ListModels();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->models_size(), 2);
  const auto& c = list->models(0);
  EXPECT_EQ(c.name(), "concrete");
  EXPECT_TRUE(c.is_default());
  EXPECT_EQ(c.task(), v1::REGRESSION);
  EXPECT_EQ(c.input_size(), 8);
  EXPECT_EQ(c.output_size(), 1);
  EXPECT_THAT(std::vector<int>(c.layer_sizes().begin(), c.layer_sizes().end()),
              ::testing::ElementsAre(8, 50, 1));
  EXPECT_EQ(c.activation(), "relu");
  EXPECT_EQ(c.format(), "mcdrop.v1");
  EXPECT_THAT(std::vector<int>(c.input_shape().begin(), c.input_shape().end()),
              ::testing::ElementsAre(8));
  EXPECT_NEAR(c.dropout(0), 0.01, 1e-7);
  EXPECT_NEAR(c.tau(), 0.075, 1e-12);
  EXPECT_EQ(c.default_samples(), 100);
  EXPECT_GT(c.load_time(), 1.7e9);
  auto d = client_->GetModelMetadata("digits");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->task(), v1::CLASSIFICATION);
  EXPECT_FALSE(d->is_default());
  EXPECT_EQ(client_->GetModelMetadata("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, ScrapedMetricsMatchTheRequestsSent) {
  const RowMajorMatrixXf x = ConcreteRows();
  PredictResponse resp;
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Call(Request("concrete", x, 250, i + 1), &resp).ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        Call(Request("digits", testing::RandomInputs(5, 16, i), 40, 1), &resp)
            .ok());
  }
  PredictRequest bad = Request("concrete", x, 10, 1);
  bad.set_shape(1, 3);
  EXPECT_FALSE(Call(bad, &resp).ok());
  EXPECT_FALSE(Call(Request("nope", x, 10, 1), &resp).ok());

  const std::string text = Scrape(server_->metrics_ports().at(0));
  ASSERT_THAT(text, HasSubstr("200 OK"));
  EXPECT_EQ(
      Metric(text, "mcdrop_requests_total", "code=\"OK\",model=\"concrete\""),
      4);
  EXPECT_EQ(
      Metric(text, "mcdrop_requests_total", "code=\"OK\",model=\"digits\""), 2);
  EXPECT_EQ(Metric(text, "mcdrop_requests_total",
                   "code=\"INVALID_ARGUMENT\",model=\"concrete\""),
            1);
  EXPECT_EQ(
      Metric(text, "mcdrop_requests_total", "code=\"NOT_FOUND\",model=\"\""),
      1);
  EXPECT_EQ(Metric(text, "mcdrop_request_duration_seconds_count",
                   "model=\"concrete\""),
            4);
  EXPECT_EQ(
      Metric(text, "mcdrop_request_queue_seconds_count", "model=\"concrete\""),
      4);
  EXPECT_EQ(Metric(text, "mcdrop_request_compute_seconds_count",
                   "model=\"concrete\""),
            4);
  EXPECT_EQ(
      Metric(text, "mcdrop_stochastic_passes_total", "model=\"concrete\""),
      4 * 3 * 250);
  EXPECT_EQ(Metric(text, "mcdrop_stochastic_passes_total", "model=\"digits\""),
            2 * 5 * 40);
  EXPECT_EQ(
      Metric(text, "mcdrop_request_batch_rows_count", "model=\"concrete\""), 4);
  EXPECT_EQ(Metric(text, "mcdrop_request_batch_rows_sum", "model=\"concrete\""),
            12);
  EXPECT_EQ(Metric(text, "mcdrop_predictive_std_count",
                   "model=\"concrete\",output=\"0\",version=\"1\""),
            12);
  EXPECT_EQ(Metric(text, "mcdrop_predictive_entropy_nats_count",
                   "model=\"digits\",version=\"1\""),
            10);
  EXPECT_EQ(Metric(text, "mcdrop_mutual_information_nats_count",
                   "model=\"digits\",version=\"1\""),
            10);
  EXPECT_EQ(Metric(text, "mcdrop_model_info",
                   "model=\"concrete\",task=\"regression\",version=\"1\""),
            1);
  EXPECT_EQ(Metric(text, "mcdrop_inflight_requests", ""), 0);
  EXPECT_THAT(text, HasSubstr("mcdrop_threadpool_threads 2"));
}

// The standard error a row's returned samples show: their sample std over
// sqrt(T).
double SamplesStandardError(const v1::RowPrediction& row) {
  const int T = row.sample_values_size();
  double mean = 0, ss = 0;
  for (float v : row.sample_values()) mean += v;
  mean /= T;
  for (float v : row.sample_values()) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / (T - 1) / T);
}

TEST_F(ServerTest, StandardErrorTargetRowByRow) {
  const RowMajorMatrixXf x = ConcreteRows();
  PredictRequest req = Request("concrete", x, 0, 5);
  req.mutable_target()->set_relative_error(0.02);
  req.mutable_target()->set_min_samples(50);
  req.set_return_samples(true);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_TRUE(resp.final());
  int largest = 0;
  int64_t passes = 0;
  for (int r = 0; r < 3; ++r) {
    SCOPED_TRACE(r);
    const v1::RowPrediction& row = resp.rows(r);
    EXPECT_TRUE(row.target_met());
    EXPECT_GE(row.samples(), 50);
    ASSERT_EQ(row.sample_values_size(), row.samples());
    const v1::OutputPrediction& o = row.outputs(0);
    EXPECT_LE(o.standard_error(), 0.02 * o.std());
    EXPECT_NEAR(o.standard_error(), SamplesStandardError(row),
                1e-5 * o.standard_error());
    // The row's figures are those of a fixed T of the same seed.
    PredictResponse fixed;
    ASSERT_TRUE(Call(Request("concrete", x, row.samples(), 5), &fixed).ok());
    EXPECT_EQ(o.mean(), fixed.rows(r).outputs(0).mean());
    EXPECT_EQ(o.variance(), fixed.rows(r).outputs(0).variance());
    EXPECT_EQ(o.standard_error(), fixed.rows(r).outputs(0).standard_error());
    largest = std::max(largest, row.samples());
    passes += row.samples();
  }
  EXPECT_EQ(resp.samples(), largest);
  EXPECT_EQ(resp.row_passes(), passes);
  EXPECT_EQ(resp.sample_values_size(), 0);  // per row instead
  const std::string text = Scrape(server_->metrics_ports().at(0));
  EXPECT_EQ(Metric(text, "mcdrop_adaptive_samples_count", "model=\"concrete\""),
            3);
  EXPECT_EQ(Metric(text, "mcdrop_adaptive_samples_sum", "model=\"concrete\""),
            passes);

  // Classification: a target on the probabilities.
  PredictRequest c = Request("digits", testing::RandomInputs(4, 16, 3), 0, 9);
  c.mutable_target()->set_standard_error(0.01);
  ASSERT_TRUE(Call(c, &resp).ok());
  for (const v1::RowPrediction& row : resp.rows()) {
    ASSERT_EQ(row.classification().standard_errors_size(), 5);
    for (double se : row.classification().standard_errors()) {
      EXPECT_LE(se, row.target_met() ? 0.01 : 1.0);
    }
  }
}

TEST_F(ServerTest, StandardErrorTargetRefusals) {
  const RowMajorMatrixXf x = ConcreteRows();
  auto refused = [&](PredictRequest req, const char* says) {
    PredictResponse resp;
    grpc::Status s = Call(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_THAT(s.error_message(), HasSubstr(says));
  };
  PredictRequest req = Request("concrete", x, 0, 5);
  req.mutable_target()->set_relative_error(-0.1);
  refused(req, "finite and >= 0");
  req.mutable_target()->set_relative_error(NAN);
  refused(req, "finite and >= 0");
  req.mutable_target()->set_relative_error(0);
  refused(req, "one of them > 0");
  req.mutable_target()->set_relative_error(0.1);
  req.mutable_target()->set_min_samples(500);
  req.mutable_target()->set_max_samples(100);
  refused(req, "min_samples <= max_samples");
  req.mutable_target()->set_min_samples(0);
  req.mutable_target()->set_max_samples(1 << 30);
  refused(req, "exceeds the server's limit");
  req.mutable_target()->set_max_samples(0);
  req.add_interval_levels(0.9);
  refused(req, "intervals");
  req.clear_interval_levels();
  req.set_mode(v1::DETERMINISTIC);
  refused(req, "MONTE_CARLO");
}

TEST_F(ServerTest, DefaultTargetAppliesWhenNoTIsGiven) {
  Limits limits;
  limits.default_relative_error = 0.05;
  StartServer(limits);
  const RowMajorMatrixXf x = ConcreteRows();
  PredictResponse resp;
  ASSERT_TRUE(Call(Request("concrete", x, 0, 3), &resp).ok());
  for (const v1::RowPrediction& row : resp.rows()) {
    EXPECT_TRUE(row.target_met());
    EXPECT_LE(row.outputs(0).standard_error(), 0.05 * row.outputs(0).std());
  }
  // A request that names T gets that T.
  ASSERT_TRUE(Call(Request("concrete", x, 300, 3), &resp).ok());
  for (const v1::RowPrediction& row : resp.rows()) {
    EXPECT_FALSE(row.target_met());
    EXPECT_EQ(row.samples(), 300);
  }
  // A model's own default (metadata) comes before the server's.
  ModelSpec spec = testing::RandomSpec({4, 8, 1}, {0.1f, 0.2f},
                                       Task::kRegression, Activation::kRelu, 1);
  spec.tau = 2;
  spec.target_standard_error = 0.5;
  const Model model = testing::MustCreate(spec);
  PredictRequest req = Request("m", testing::RandomInputs(2, 4, 1), 0, 1);
  PredictPlan plan;
  ASSERT_TRUE(ValidatePredictRequest(req, model, limits, &plan).ok());
  ASSERT_TRUE(plan.adaptive.has_value());
  EXPECT_EQ(plan.adaptive->target_abs, 0.5);
  EXPECT_EQ(plan.adaptive->target_rel, 0);
  // Not with intervals: those need a fixed T, the default one.
  req.add_interval_levels(0.9);
  ASSERT_TRUE(ValidatePredictRequest(req, model, limits, &plan).ok());
  EXPECT_FALSE(plan.adaptive.has_value());
  EXPECT_EQ(plan.options.samples, limits.default_samples);
}

// Reads every message of a PredictStream call.
std::vector<PredictResponse> ReadStream(v1::Inference::Stub* stub,
                                        const PredictRequest& req,
                                        grpc::Status* status) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub->PredictStream(&ctx, req);
  std::vector<PredictResponse> out;
  PredictResponse m;
  while (reader->Read(&m)) out.push_back(m);
  *status = reader->Finish();
  return out;
}

// A response without its timings, for comparing answers.
std::string Untimed(PredictResponse r) {
  r.clear_queue_seconds();
  r.clear_compute_seconds();
  // Every prediction has an id of its own.
  r.clear_prediction_id();
  for (auto& row : *r.mutable_rows()) row.clear_id();
  return r.SerializeAsString();
}

TEST_F(ServerTest, StreamSendsRunningEstimatesThenThePredictAnswer) {
  const RowMajorMatrixXf x = ConcreteRows();
  for (bool target : {false, true}) {
    SCOPED_TRACE(target ? "target" : "fixed T");
    PredictRequest req = Request("concrete", x, target ? 0 : 1000, 21);
    req.set_return_samples(true);
    if (target) req.mutable_target()->set_relative_error(0.01);
    grpc::Status status;
    const std::vector<PredictResponse> msgs =
        ReadStream(stub_.get(), req, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_GE(msgs.size(), 3u);
    for (size_t i = 0; i + 1 < msgs.size(); ++i) {
      EXPECT_FALSE(msgs[i].final());
      EXPECT_EQ(msgs[i].sample_values_size(), 0);           // samples come last
      EXPECT_LT(msgs[i].samples(), msgs[i + 1].samples());  // in order
      EXPECT_GT(msgs[i].rows(0).outputs(0).standard_error(), 0);
    }
    ASSERT_TRUE(msgs.back().final());
    PredictResponse unary;
    ASSERT_TRUE(Call(req, &unary).ok());
    EXPECT_EQ(Untimed(msgs.back()), Untimed(unary));
  }
  const std::string text = Scrape(server_->metrics_ports().at(0));
  EXPECT_EQ(Metric(text, "mcdrop_requests_total",
                   "api=\"mcdrop.v1.stream\",code=\"OK\",model=\"concrete\""),
            2);
  EXPECT_GT(Metric(text, "mcdrop_stream_messages_total", "model=\"concrete\""),
            3);
}

TEST_F(ServerTest, CancellingAStreamFreesTheEngine) {
  // 512 rows x T = 100000 in rounds: several seconds of passes.
  RowMajorMatrixXf x(512, 8);
  for (int r = 0; r < 512; ++r) x.row(r) = ConcreteRows().row(r % 3);
  grpc::ClientContext ctx;
  auto reader = stub_->PredictStream(&ctx, Request("concrete", x, 100000, 1));
  PredictResponse first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_FALSE(first.final());
  const absl::Time cancelled = absl::Now();
  ctx.TryCancel();
  PredictResponse more;
  while (reader->Read(&more)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  bool idle = false;
  double counted = 0;
  for (int i = 0; i < 200 && !(idle && counted == 1); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    idle = server_->engine().busy_threads() == 0 &&
           server_->engine().queued_tasks() == 0;
    counted =
        Metric(Scrape(server_->metrics_ports().at(0)), "mcdrop_requests_total",
               "api=\"mcdrop.v1.stream\",code=\"CANCELLED\"");
  }
  EXPECT_TRUE(idle);
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(1));
  EXPECT_EQ(counted, 1);
  // And the server answers at once.
  PredictResponse resp;
  EXPECT_TRUE(
      Call(Request("concrete", ConcreteRows(), 100, 1), &resp, absl::Seconds(1))
          .ok());
}

// Input drift: each admitted request's values are compared with the
// model's training standardisation; those beyond 4 std are counted.
TEST_F(ServerTest, InputDriftCountsValuesBeyondFourTrainingStd) {
  auto model = Model::Load(kConcrete);
  ASSERT_TRUE(model.ok());
  const ModelSpec& spec = model->spec();
  ASSERT_EQ(spec.input_mean.size(), 8);
  RowMajorMatrixXf x(2, 8);
  for (int c = 0; c < 8; ++c) {
    x(0, c) = spec.input_mean[c];
    x(1, c) = spec.input_mean[c] + 0.5f * spec.input_std[c];
  }
  x(1, 0) = spec.input_mean[0] + 5.0f * spec.input_std[0];
  x(1, 3) = spec.input_mean[3] - 4.5f * spec.input_std[3];
  x(1, 5) = spec.input_mean[5] + 3.9f * spec.input_std[5];  // within 4
  PredictResponse resp;
  ASSERT_TRUE(Call(Request("concrete", x, 10, 1), &resp).ok());
  PredictRequest bad = Request("concrete", x, 10, 1);
  bad.set_samples(-1);  // refused: its inputs are not counted
  EXPECT_FALSE(Call(bad, &resp).ok());
  const std::string text = server_->metrics().Text();
  EXPECT_EQ(Metric(text, "mcdrop_input_values_total", "model=\"concrete\""),
            16);
  EXPECT_EQ(Metric(text, "mcdrop_input_values_out_of_range_total",
                   "model=\"concrete\",version=\"1\""),
            2);
}

}  // namespace
}  // namespace mcdrop::server
