// Copyright 2026 The mcdrop Authors.
//
// The Open Inference Protocol mapping without gRPC: requests translated to
// mcdrop.v1 (inputs in every accepted form, parameters, outputs), refusals,
// and responses built from the engine's predictions.

#include "server/oip.h"

#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "inference/open_inference_grpc.grpc.pb.h"
#include "server/request.h"
#include "server/server.h"
#include "tests/testing/http.h"
#include "tests/testing/metrics.h"
#include "tests/testing/models.h"

namespace mcdrop::server {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ServedModel Served(Task task) {
  return ServedModel{"m", 3, "test", absl::Now(),
                     testing::MustCreate(testing::RandomSpec(
                         {4, 8, task == Task::kRegression ? 2 : 3},
                         {0.1f, 0.2f}, task, Activation::kRelu, 5))};
}

ModelInferRequest Request(const std::vector<float>& values, int rows) {
  ModelInferRequest r;
  r.set_model_name("m");
  r.set_id("call-7");
  auto* in = r.add_inputs();
  in->set_name("input");
  in->set_datatype("FP32");
  in->add_shape(rows);
  in->add_shape(static_cast<int64_t>(values.size()) / rows);
  for (float v : values) in->mutable_contents()->add_fp32_contents(v);
  return r;
}

TEST(OipTest, TypedRawAndHalfInputsTranslateAlike) {
  const ServedModel served = Served(Task::kRegression);
  const std::vector<float> x = {0.5f, -1.0f, 2.0f,  0.25f,
                                1.5f, 0.0f,  -0.5f, 3.0f};
  auto typed = TranslateInferRequest(Request(x, 2), served.model);
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_THAT(typed->predict.shape(), ElementsAre(2, 4));
  EXPECT_THAT(typed->predict.inputs(),
              ElementsAre(0.5f, -1.0f, 2.0f, 0.25f, 1.5f, 0.0f, -0.5f, 3.0f));
  EXPECT_THAT(typed->outputs,
              ElementsAre("mean", "variance", "std", "model_variance"));
  // The same values as raw FP32, FP64 and BF16 (all exact in bf16).
  for (const char* type : {"FP32", "FP64", "BF16", "FP16"}) {
    ModelInferRequest r = Request(x, 2);
    r.mutable_inputs(0)->clear_contents();
    r.mutable_inputs(0)->set_datatype(type);
    std::string raw;
    for (float v : x) {
      if (std::string(type) == "FP32") {
        raw.append(reinterpret_cast<const char*>(&v), 4);
      } else if (std::string(type) == "FP64") {
        const double d = v;
        raw.append(reinterpret_cast<const char*>(&d), 8);
      } else if (std::string(type) == "BF16") {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        const uint16_t h = static_cast<uint16_t>(bits >> 16);
        raw.append(reinterpret_cast<const char*>(&h), 2);
      } else {  // FP16 of these values: sign, 5-bit exponent, 10-bit mantissa
        int e;
        const float m = std::frexp(std::abs(v), &e);
        uint16_t h =
            v == 0.0f
                ? 0
                : static_cast<uint16_t>(((e + 14) << 10) |
                                        (static_cast<int>(m * 2048) - 1024));
        if (v < 0) h |= 0x8000;
        raw.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    r.add_raw_input_contents(raw);
    auto t = TranslateInferRequest(r, served.model);
    ASSERT_TRUE(t.ok()) << type << ": " << t.status();
    EXPECT_THAT(
        t->predict.inputs(),
        ::testing::Pointwise(::testing::FloatEq(), typed->predict.inputs()))
        << type;
  }
}

TEST(OipTest, ParametersAndOutputs) {
  const ServedModel served = Served(Task::kRegression);
  ModelInferRequest r = Request({1, 2, 3, 4}, 1);
  (*r.mutable_parameters())["samples"].set_int64_param(500);
  (*r.mutable_parameters())["seed"].set_uint64_param(99);
  (*r.mutable_parameters())["exclude_noise"].set_bool_param(true);
  (*r.mutable_parameters())["interval_levels"].set_string_param("0.9, 0.5");
  r.add_outputs()->set_name("interval_upper");
  r.add_outputs()->set_name("samples");
  auto t = TranslateInferRequest(r, served.model);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->predict.samples(), 500);
  EXPECT_EQ(t->predict.seed(), 99u);
  EXPECT_TRUE(t->predict.exclude_noise());
  EXPECT_THAT(t->predict.interval_levels(), ElementsAre(0.9, 0.5));
  EXPECT_TRUE(t->predict.return_samples());
  EXPECT_THAT(t->outputs, ElementsAre("interval_upper", "samples"));

  // Through validation and the engine to the response.
  PredictPlan plan;
  ASSERT_TRUE(
      ValidatePredictRequest(t->predict, served.model, Limits{}, &plan).ok());
  Engine engine({.threads = 2});
  auto p = engine.Predict(served.model,
                          InputMatrix(t->predict.inputs().data(), plan.rows, 4),
                          plan.options);
  ASSERT_TRUE(p.ok()) << p.status();
  ModelInferResponse resp;
  FillInferResponse(r, *t, served, plan, FixedAnswer(*p), &resp);
  EXPECT_EQ(resp.id(), "call-7");
  EXPECT_EQ(resp.model_version(), "3");
  EXPECT_EQ(resp.parameters().at("samples").int64_param(), 500);
  EXPECT_EQ(resp.parameters().at("seed").uint64_param(), 99u);
  ASSERT_EQ(resp.outputs_size(), 2);
  ASSERT_EQ(resp.raw_output_contents_size(), 2);
  EXPECT_THAT(resp.outputs(0).shape(), ElementsAre(1, 2, 2));
  const std::string& upper = resp.raw_output_contents(0);
  ASSERT_EQ(upper.size(), 4 * sizeof(double));
  double u;
  std::memcpy(&u, upper.data() + sizeof(double), sizeof(double));
  EXPECT_EQ(u, p->Interval(0, 0, 1).upper);
  EXPECT_THAT(resp.outputs(1).shape(), ElementsAre(500, 1, 2));
  EXPECT_EQ(resp.raw_output_contents(1).size(), 500 * 2 * sizeof(float));
}

TEST(OipTest, ClassifierOutputs) {
  const ServedModel served = Served(Task::kClassification);
  auto t =
      TranslateInferRequest(Request({1, 2, 3, 4, 5, 6, 7, 8}, 2), served.model);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->outputs,
              ElementsAre("probabilities", "predicted_class", "entropy",
                          "mutual_information", "variation_ratio"));
  inference::ModelMetadataResponse meta;
  DescribeOipModel(served, {1, 3}, &meta);
  EXPECT_THAT(meta.versions(), ElementsAre("1", "3"));
  ASSERT_EQ(meta.inputs_size(), 1);
  EXPECT_EQ(meta.inputs(0).name(), "input");
  EXPECT_THAT(meta.inputs(0).shape(), ElementsAre(-1, 4));
  EXPECT_EQ(meta.outputs(1).name(), "predicted_class");
  EXPECT_EQ(meta.outputs(1).datatype(), "INT64");
  EXPECT_THAT(meta.outputs(1).shape(), ElementsAre(-1));
}

TEST(OipTest, RefusalsSayWhatIsWrong) {
  const ServedModel served = Served(Task::kRegression);
  struct Case {
    const char* what;
    std::function<void(ModelInferRequest&)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"name", [](ModelInferRequest& r) { r.mutable_inputs(0)->set_name("x"); },
       "unknown input tensor \"x\""},
      {"two inputs",
       [](ModelInferRequest& r) { *r.add_inputs() = r.inputs(0); },
       "exactly one input tensor"},
      {"datatype",
       [](ModelInferRequest& r) { r.mutable_inputs(0)->set_datatype("INT32"); },
       "input datatype INT32 is not supported"},
      {"count",
       [](ModelInferRequest& r) {
         r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
       },
       "fp32_contents holds 5 values; the shape needs 4"},
      {"both forms",
       [](ModelInferRequest& r) {
         r.add_raw_input_contents(std::string(16, 0));
       },
       "not both"},
      {"raw size",
       [](ModelInferRequest& r) {
         r.mutable_inputs(0)->clear_contents();
         r.add_raw_input_contents(std::string(15, 0));
       },
       "raw_input_contents holds 15 bytes; shape and FP32 need 16"},
      {"unknown parameter",
       [](ModelInferRequest& r) {
         (*r.mutable_parameters())["temperature"].set_double_param(1);
       },
       "unknown parameter \"temperature\""},
      {"parameter type",
       [](ModelInferRequest& r) {
         (*r.mutable_parameters())["samples"].set_string_param("10");
       },
       "parameter \"samples\" must be an int64_param or uint64_param"},
      {"mode",
       [](ModelInferRequest& r) {
         (*r.mutable_parameters())["mode"].set_string_param("fast");
       },
       "parameter \"mode\" is \"fast\""},
      {"output",
       [](ModelInferRequest& r) { r.add_outputs()->set_name("logits"); },
       "unknown output \"logits\""},
      {"intervals without levels",
       [](ModelInferRequest& r) {
         r.add_outputs()->set_name("interval_lower");
       },
       "need the parameter \"interval_levels\""},
      {"version", [](ModelInferRequest& r) { r.set_model_version("two"); },
       "model_version \"two\""},
  };
  for (const Case& c : cases) {
    ModelInferRequest r = Request({1, 2, 3, 4}, 1);
    c.edit(r);
    auto t = TranslateInferRequest(r, served.model);
    ASSERT_FALSE(t.ok()) << c.what;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.message))
        << c.what;
  }
}

// Over gRPC, on the server's one port, as an unmodified OIP client calls it.
TEST(OipServiceTest, AnswersAsTheEngineDoes) {
  ServerOptions o;
  o.models = {"concrete=" + std::string(MCDROP_SOURCE_DIR) +
              "/models/concrete.safetensors"};
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_address = "127.0.0.1:0";
  o.threads = 2;
  o.http_port = 0;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                          grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    inference::ServerLiveResponse live;
    ASSERT_TRUE(stub->ServerLive(&ctx, {}, &live).ok());
    EXPECT_TRUE(live.live());
  }
  {
    grpc::ClientContext ctx;
    inference::ServerReadyResponse ready;
    ASSERT_TRUE(stub->ServerReady(&ctx, {}, &ready).ok());
    EXPECT_TRUE(ready.ready());
  }
  {
    grpc::ClientContext ctx;
    inference::ModelReadyRequest req;
    req.set_name("concrete");
    inference::ModelReadyResponse ready;
    ASSERT_TRUE(stub->ModelReady(&ctx, req, &ready).ok());
    EXPECT_TRUE(ready.ready());
    grpc::ClientContext ctx2;
    req.set_name("nope");
    ASSERT_TRUE(stub->ModelReady(&ctx2, req, &ready).ok());
    EXPECT_FALSE(ready.ready());
  }
  {
    grpc::ClientContext ctx;
    inference::ModelMetadataRequest req;
    req.set_name("concrete");
    inference::ModelMetadataResponse meta;
    ASSERT_TRUE(stub->ModelMetadata(&ctx, req, &meta).ok());
    EXPECT_THAT(meta.inputs(0).shape(), ElementsAre(-1, 8));
    EXPECT_THAT(meta.versions(), ElementsAre("1"));
  }
  const std::vector<float> x = {540, 0, 0, 162, 2.5, 1040, 676, 28};
  ModelInferRequest req = Request(x, 1);
  req.set_model_name("concrete");
  req.mutable_inputs(0)->clear_contents();
  req.add_raw_input_contents(
      std::string(reinterpret_cast<const char*>(x.data()), 32));
  (*req.mutable_parameters())["samples"].set_int64_param(1000);
  (*req.mutable_parameters())["seed"].set_int64_param(42);
  grpc::ClientContext ctx;
  ModelInferResponse resp;
  grpc::Status s = stub->ModelInfer(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.id(), "call-7");
  ASSERT_EQ(resp.outputs(0).name(), "mean");
  double mean;
  std::memcpy(&mean, resp.raw_output_contents(0).data(), 8);
  auto model = Model::Load(std::string(MCDROP_SOURCE_DIR) +
                           "/models/concrete.safetensors");
  ASSERT_TRUE(model.ok());
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 1000;
  opt.seed = 42;
  auto want = engine.Predict(*model, InputMatrix(x.data(), 1, 8), opt);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(mean, want->Mean(0, 0));
  // A refusal arrives as the same clear status.
  req.mutable_inputs(0)->set_name("x");
  grpc::ClientContext ctx2;
  s = stub->ModelInfer(&ctx2, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown input tensor \"x\""));

  // The same over HTTP/REST, and each counted under its protocol and API.
  const int fd = testing::Connect((*server)->http_port());
  ASSERT_GE(fd, 0);
  const std::string body =
      R"({"parameters": {"samples": 1000, "seed": 42}, "outputs": [{"name": "mean"}],
          "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                      "data": [540, 0, 0, 162, 2.5, 1040, 676, 28]}]})";
  testing::Send(fd, absl::StrCat("POST /v2/models/concrete/infer HTTP/1.1\r\n"
                                 "Content-Length: ",
                                 body.size(), "\r\n\r\n", body));
  const std::string reply = testing::ReadOne(fd);
  close(fd);
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 200"));
  // JSON carries the same double (written in its shortest exact form).
  const size_t at = reply.find("\"data\":[");
  ASSERT_NE(at, std::string::npos) << reply;
  EXPECT_EQ(std::strtod(reply.c_str() + at + 8, nullptr), mean);
  const std::string text = (*server)->metrics().Text();
  auto count = [&](const char* labels) {
    return testing::Metric(text, "mcdrop_requests_total", labels);
  };
  EXPECT_EQ(
      count("api=\"oip\",code=\"OK\",model=\"concrete\",protocol=\"grpc\""), 1);
  EXPECT_EQ(count("api=\"oip\",code=\"INVALID_ARGUMENT\",model=\"concrete\","
                  "protocol=\"grpc\""),
            1);
  EXPECT_EQ(
      count("api=\"oip\",code=\"OK\",model=\"concrete\",protocol=\"http\""), 1);
  EXPECT_EQ(count("api=\"mcdrop.v1\",code=\"OK\""), 0);
  EXPECT_EQ(testing::Metric(text, "mcdrop_request_duration_seconds_count",
                            "api=\"oip\",model=\"concrete\",protocol=\"http\""),
            1);
}

}  // namespace
}  // namespace mcdrop::server
