// Copyright 2026 The mcdrop Authors.
//
// Conformal intervals and prediction sets over the wire, from calibrated
// model files.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/calibrate.h"
#include "mcdrop/v1/inference.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/http.h"
#include "tests/testing/models.h"

namespace mcdrop::server {
namespace {

using v1::PredictRequest;
using v1::PredictResponse;

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

// Calibrates `model` on `x` with made-up targets / labels and saves it.
std::string SaveCalibrated(const Model& model, const std::string& name,
                           int rows) {
  Engine engine({.threads = 2});
  const RowMajorMatrixXf x =
      testing::RandomInputs(rows, model.input_size(), 17).array() * 50 + 300;
  RowMajorMatrixXf y;
  std::vector<int> labels;
  if (model.task() == Task::kRegression) {
    y = testing::RandomInputs(rows, model.output_size(), 18).array() * 10 + 35;
  } else {
    for (int r = 0; r < rows; ++r) labels.push_back(r % model.output_size());
  }
  CalibrateOptions o;
  o.samples = 50;
  o.class_score = ConformalScore::kAps;
  o.source = "test rows";
  o.created = "2026-12-02T00:00:00Z";
  auto c = Calibrate(engine, model, x, y, labels, o);
  EXPECT_TRUE(c.ok()) << c.status();
  ModelSpec spec = model.spec();
  spec.calibration = *c;
  const std::string path = ::testing::TempDir() + "/" + name + ".safetensors";
  EXPECT_TRUE(testing::MustCreate(spec).Save(path).ok());
  return path;
}

class CalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto concrete = Model::Load(kConcrete);
    ASSERT_TRUE(concrete.ok());
    concrete_ = SaveCalibrated(*concrete, "concrete_cal", 39);
    auto classifier = Model::Create(
        testing::RandomSpec({16, 32, 5}, {0.1f, 0.3f}, Task::kClassification,
                            Activation::kRelu, 3));
    ASSERT_TRUE(classifier.ok());
    classifier_ = SaveCalibrated(*classifier, "classifier_cal", 99);
    ServerOptions o;
    o.models = {"concrete=" + concrete_, "plain=" + kConcrete,
                "digits=" + classifier_};
    o.host = "127.0.0.1";
    o.port = 0;
    o.http_port = 0;
    o.threads = 2;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::Inference::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials()));
  }

  grpc::Status Call(const PredictRequest& req, PredictResponse* resp) {
    grpc::ClientContext ctx;
    return stub_->Predict(&ctx, req, resp);
  }

  static PredictRequest Request(const std::string& model, int q) {
    PredictRequest r;
    r.set_model(model);
    r.add_shape(2);
    r.add_shape(q);
    for (int i = 0; i < 2 * q; ++i) r.add_inputs(100.0f + 7 * i);
    r.set_samples(200);
    r.set_seed(5);
    return r;
  }

  std::string concrete_, classifier_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(CalibrationTest, MetadataSaysWhatTheCalibrationWasMadeFrom) {
  grpc::ClientContext ctx;
  v1::GetModelMetadataRequest req;
  req.set_model("concrete");
  v1::ModelMetadata meta;
  ASSERT_TRUE(stub_->GetModelMetadata(&ctx, req, &meta).ok());
  ASSERT_TRUE(meta.has_calibration());
  EXPECT_EQ(meta.calibration().score(), "normalized_residual");
  EXPECT_EQ(meta.calibration().rows(), 39);
  EXPECT_EQ(meta.calibration().samples(), 50);
  EXPECT_EQ(meta.calibration().source(), "test rows");
  EXPECT_EQ(meta.calibration().created(), "2026-12-02T00:00:00Z");
  EXPECT_DOUBLE_EQ(meta.calibration().max_level(), 39.0 / 40.0);
  grpc::ClientContext ctx2;
  req.set_model("plain");
  ASSERT_TRUE(stub_->GetModelMetadata(&ctx2, req, &meta).ok());
  EXPECT_FALSE(meta.has_calibration());
}

TEST_F(CalibrationTest, RegressionGetsConformalIntervalsBesideTheMixtureOnes) {
  auto model = Model::Load(concrete_);
  ASSERT_TRUE(model.ok());
  const std::vector<double>& scores = model->spec().calibration->scores[0];
  PredictRequest req = Request("concrete", 8);
  for (double level : {0.5, 0.9, 0.99}) req.add_interval_levels(level);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  for (const auto& row : resp.rows()) {
    const auto& o = row.outputs(0);
    ASSERT_EQ(o.conformal_intervals_size(), 3);
    for (int i = 0; i < 2; ++i) {
      const auto& iv = o.conformal_intervals(i);
      const double q = ConformalQuantile(scores, req.interval_levels(i));
      EXPECT_EQ(iv.level(), req.interval_levels(i));
      EXPECT_DOUBLE_EQ(iv.lower(), o.mean() - q * o.std());
      EXPECT_DOUBLE_EQ(iv.upper(), o.mean() + q * o.std());
    }
    // 0.99 > 39 / 40: too few calibration rows for a finite interval.
    EXPECT_EQ(o.conformal_intervals(2).lower(),
              -std::numeric_limits<double>::infinity());
    EXPECT_EQ(o.conformal_intervals(2).upper(),
              std::numeric_limits<double>::infinity());
    EXPECT_EQ(o.intervals_size(), 3);  // the mixture's are still there
  }
  // Not without the noise (the calibration scored the full predictive), and
  // not for a model without a calibration.
  req.set_exclude_noise(true);
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.rows(0).outputs(0).conformal_intervals_size(), 0);
  req.set_exclude_noise(false);
  req.set_model("plain");
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.rows(0).outputs(0).conformal_intervals_size(), 0);
  EXPECT_EQ(resp.rows(0).outputs(0).intervals_size(), 3);
}

TEST_F(CalibrationTest, ClassifierGetsPredictionSets) {
  auto model = Model::Load(classifier_);
  ASSERT_TRUE(model.ok());
  const Calibration& c = *model->spec().calibration;
  EXPECT_EQ(c.score, ConformalScore::kAps);
  PredictRequest req = Request("digits", 16);
  req.add_set_levels(0.5);
  req.add_set_levels(0.9);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  for (const auto& row : resp.rows()) {
    const auto& cls = row.classification();
    ASSERT_EQ(cls.prediction_sets_size(), 2);
    const std::vector<double> probs(cls.probabilities().begin(),
                                    cls.probabilities().end());
    size_t previous = 0;
    for (int i = 0; i < 2; ++i) {
      const auto& set = cls.prediction_sets(i);
      EXPECT_EQ(set.level(), req.set_levels(i));
      const std::vector<int> want = PredictionSet(
          c.score, probs, ConformalQuantile(c.scores[0], req.set_levels(i)));
      EXPECT_EQ(std::vector<int>(set.classes().begin(), set.classes().end()),
                want);
      EXPECT_GE(want.size(), previous);  // higher level, no smaller set
      previous = want.size();
    }
  }
}

TEST_F(CalibrationTest, SetLevelsAreRefusedWhereTheyCannotHold) {
  auto refused = [&](PredictRequest req, const std::string& what) {
    PredictResponse resp;
    const grpc::Status s = Call(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find(what), std::string::npos)
        << s.error_message();
  };
  PredictRequest req = Request("digits", 16);
  req.add_set_levels(1.0);
  refused(req, "set level 1 is not in (0, 1)");
  req.clear_set_levels();
  req.add_set_levels(std::nan(""));
  refused(req, "is not in (0, 1)");
  req.clear_set_levels();
  req.add_set_levels(0.9);
  req.set_mode(v1::DETERMINISTIC);
  refused(req, "MONTE_CARLO");
  req.set_mode(v1::MONTE_CARLO);
  for (int i = 0; i < 16; ++i) req.add_set_levels(0.5);
  refused(req, "at most 16");
  PredictRequest reg = Request("concrete", 8);
  reg.add_set_levels(0.9);
  refused(reg, "classification models only");
  // The guarantee is for the calibration's T (50) and up.
  PredictRequest few = Request("digits", 16);
  few.add_set_levels(0.9);
  few.set_samples(49);
  refused(few, "set_levels need T >= 50, the T the calibration was made at");
  few.set_samples(0);
  few.mutable_target()->set_standard_error(0.01);
  refused(few, "set_levels need a fixed T");
}

TEST_F(CalibrationTest, NoConformalIntervalsBelowTheCalibrationsT) {
  PredictRequest req = Request("concrete", 8);
  req.add_interval_levels(0.9);
  req.set_samples(49);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.rows(0).outputs(0).intervals_size(), 1);
  EXPECT_EQ(resp.rows(0).outputs(0).conformal_intervals_size(), 0);
  req.set_samples(50);
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.rows(0).outputs(0).conformal_intervals_size(), 1);
}

// The Open Inference Protocol carries them too: set_levels as a parameter,
// prediction_set a BOOL [rows, levels, classes] tensor, conformal_lower /
// conformal_upper FP64 [rows, outputs, levels] (JSON null where unbounded).
TEST_F(CalibrationTest, OpenInferenceProtocolOverHttp) {
  auto post = [&](const std::string& model, const std::string& body) {
    const int fd = testing::Connect(server_->http_port());
    EXPECT_GE(fd, 0);
    testing::Send(fd, absl::StrCat("POST /v2/models/", model,
                                   "/infer HTTP/1.1\r\nContent-Length: ",
                                   body.size(), "\r\n\r\n", body));
    const std::string reply = testing::ReadOne(fd);
    close(fd);
    const size_t at = reply.find("\r\n\r\n");
    EXPECT_NE(reply.find("HTTP/1.1 200"), std::string::npos) << reply;
    return nlohmann::json::parse(reply.substr(at + 4), nullptr, false);
  };
  std::string inputs;
  for (int i = 0; i < 16; ++i)
    inputs += absl::StrCat(i ? "," : "", 100 + 7 * i);
  nlohmann::json sets = post(
      "digits",
      R"({"parameters": {"samples": 200, "seed": 5, "set_levels": "0.5,0.9"},
          "inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                      "data": [)" +
          inputs + "]}]}");
  ASSERT_FALSE(sets.is_discarded());
  const nlohmann::json* mask = nullptr;
  for (const auto& o : sets["outputs"]) {
    if (o["name"] == "prediction_set") mask = &o;
  }
  ASSERT_NE(mask, nullptr) << sets.dump();
  EXPECT_EQ((*mask)["datatype"], "BOOL");
  EXPECT_EQ((*mask)["shape"], nlohmann::json({1, 2, 5}));
  // The same sets as mcdrop.v1 gives for the same row and seed.
  PredictRequest req;
  req.set_model("digits");
  req.add_shape(1);
  req.add_shape(16);
  for (int i = 0; i < 16; ++i) req.add_inputs(100.0f + 7 * i);
  req.set_samples(200);
  req.set_seed(5);
  req.add_set_levels(0.5);
  req.add_set_levels(0.9);
  PredictResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  for (int l = 0; l < 2; ++l) {
    const auto& set = resp.rows(0).classification().prediction_sets(l);
    for (int k = 0; k < 5; ++k) {
      const bool in = std::find(set.classes().begin(), set.classes().end(),
                                k) != set.classes().end();
      EXPECT_EQ((*mask)["data"][l * 5 + k].get<bool>(), in) << l << " " << k;
    }
  }

  nlohmann::json reg = post(
      "concrete",
      R"({"parameters": {"samples": 200, "seed": 5, "interval_levels": "0.5,0.99"},
          "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                      "data": [540, 0, 0, 162, 2.5, 1040, 676, 28]}]})");
  ASSERT_FALSE(reg.is_discarded());
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& o : reg["outputs"]) by_name[o["name"]] = o;
  ASSERT_EQ(by_name.count("conformal_lower"), 1u) << reg.dump();
  ASSERT_EQ(by_name.count("conformal_upper"), 1u);
  EXPECT_EQ(by_name["conformal_lower"]["shape"], nlohmann::json({1, 1, 2}));
  const double mean = by_name["mean"]["data"][0],
               std = by_name["std"]["data"][0];
  auto model = Model::Load(concrete_);
  ASSERT_TRUE(model.ok());
  const double q = ConformalQuantile(model->spec().calibration->scores[0], 0.5);
  EXPECT_DOUBLE_EQ(by_name["conformal_lower"]["data"][0].get<double>(),
                   mean - q * std);
  EXPECT_DOUBLE_EQ(by_name["conformal_upper"]["data"][0].get<double>(),
                   mean + q * std);
  EXPECT_TRUE(by_name["conformal_upper"]["data"][1].is_null());  // +infinity

  // Named, they are refused where they cannot hold (T below the
  // calibration's 50); by default, left out.
  const std::string row =
      R"("inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                     "data": [540, 0, 0, 162, 2.5, 1040, 676, 28]}])";
  const int fd = testing::Connect(server_->http_port());
  const std::string named =
      R"({"parameters": {"samples": 20, "interval_levels": 0.9},
          "outputs": [{"name": "conformal_lower"}], )" +
      row + "}";
  testing::Send(fd, absl::StrCat("POST /v2/models/concrete/infer HTTP/1.1\r\n"
                                 "Content-Length: ",
                                 named.size(), "\r\n\r\n", named));
  const std::string reply = testing::ReadOne(fd);
  close(fd);
  EXPECT_NE(reply.find("HTTP/1.1 400"), std::string::npos) << reply;
  EXPECT_NE(reply.find("T at least the calibration's (50)"), std::string::npos)
      << reply;
  nlohmann::json fewer =
      post("concrete",
           R"({"parameters": {"samples": 20, "interval_levels": 0.9}, )" + row +
               "}");
  for (const auto& o : fewer["outputs"]) {
    EXPECT_NE(o["name"], "conformal_lower");
  }
  EXPECT_EQ(fewer["outputs"].size(), 6u) << fewer.dump();
}

}  // namespace
}  // namespace mcdrop::server
