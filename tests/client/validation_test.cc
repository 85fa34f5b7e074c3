// Copyright 2026 The mcdrop Authors.
//
// A wrong or hostile server: a fake mcdrop.v1.Inference answers Predict with
// inconsistent shapes, and the client library, the evaluators and
// mcdrop-client must each answer with a clear error naming the inconsistency,
// never crash or read out of bounds. Also ValidatePredictResponse on its own.

#include "client/validation.h"

#include <gmock/gmock.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "client/client.h"
#include "client/evaluation.h"
#include "mcdrop/v1/inference.grpc.pb.h"

namespace mcdrop {
namespace {

using ::testing::HasSubstr;

constexpr int kRows = 2;
constexpr int kSamples = 3;
constexpr int kClasses = 3;

// A consistent regression answer to kRows rows: one output, kSamples samples,
// an interval per CoverageLevels() level.
v1::PredictResponse GoodRegression() {
  v1::PredictResponse r;
  r.set_model("fake");
  r.set_version(1);
  r.set_task(v1::REGRESSION);
  r.set_samples(kSamples);
  r.set_seed(1);
  for (int b = 0; b < kRows; ++b) {
    v1::OutputPrediction* o = r.add_rows()->add_outputs();
    o->set_mean(10.0 + b);
    o->set_variance(1.0);
    o->set_std(1.0);
    for (double level : CoverageLevels()) {
      v1::Interval* iv = o->add_intervals();
      iv->set_level(level);
      iv->set_lower(10.0 + b - 3 * level);
      iv->set_upper(10.0 + b + 3 * level);
    }
  }
  for (int64_t d : {kSamples, kRows, 1}) r.add_sample_shape(d);
  for (int t = 0; t < kSamples; ++t) {
    for (int b = 0; b < kRows; ++b) r.add_sample_values(9.5f + b + 0.5f * t);
  }
  return r;
}

// A consistent classification answer to kRows rows of kClasses classes,
// with samples.
v1::PredictResponse GoodClassification() {
  v1::PredictResponse r;
  r.set_model("fake");
  r.set_version(1);
  r.set_task(v1::CLASSIFICATION);
  r.set_samples(kSamples);
  r.set_seed(1);
  for (int b = 0; b < kRows; ++b) {
    v1::ClassPrediction* c = r.add_rows()->mutable_classification();
    for (double p : {0.6, 0.3, 0.1}) c->add_probabilities(p);
    c->set_predicted_class(0);
    c->set_entropy(0.9);
  }
  for (int64_t d : {kSamples, kRows, kClasses}) r.add_sample_shape(d);
  for (int i = 0; i < kSamples * kRows * kClasses; ++i) {
    r.add_sample_values(1.0f / kClasses);
  }
  return r;
}

void SetShape(v1::PredictResponse* r, std::vector<int64_t> shape, int values) {
  r->clear_sample_shape();
  for (int64_t d : shape) r->add_sample_shape(d);
  r->clear_sample_values();
  for (int i = 0; i < values; ++i) r->add_sample_values(1.0f);
}

struct Case {
  std::string name;
  bool classification;
  std::function<void(v1::PredictResponse*)> mutate;
  std::string message;  // part of the error
  // Whether the request alone reveals the inconsistency, so that
  // Client::Predict reports it; otherwise only a check against the model's
  // task and size (evaluators, mcdrop-client) can.
  bool request_reveals = true;
};

std::vector<Case> Cases() {
  return {
      {"extra_row", false, [](auto* r) { r->add_rows()->CopyFrom(r->rows(0)); },
       "3 rows for the 2 rows sent"},
      {"missing_row", false, [](auto* r) { r->mutable_rows()->RemoveLast(); },
       "1 rows for the 2 rows sent"},
      {"one_row_with_two_outputs", false,
       [](auto* r) {
         r->mutable_rows(1)->add_outputs()->CopyFrom(r->rows(1).outputs(0));
       },
       "row 1 has 2 outputs, expected 1"},
      {"every_row_with_two_outputs", false,
       [](auto* r) {
         for (auto& row : *r->mutable_rows())
           row.add_outputs()->CopyFrom(row.outputs(0));
         SetShape(r, {kSamples, kRows, 2}, kSamples * kRows * 2);
       },
       "row 0 has 2 outputs, expected 1", /*request_reveals=*/false},
      {"no_outputs", false,
       [](auto* r) {
         for (auto& row : *r->mutable_rows()) row.clear_outputs();
         SetShape(r, {kSamples, kRows, 0}, 0);
       },
       "row 0 has"},
      {"missing_interval", false,
       [](auto* r) {
         r->mutable_rows(0)
             ->mutable_outputs(0)
             ->mutable_intervals()
             ->RemoveLast();
       },
       "row 0 output 0 has 3 intervals for the 4 levels asked"},
      {"wrong_interval_level", false,
       [](auto* r) {
         r->mutable_rows(1)
             ->mutable_outputs(0)
             ->mutable_intervals(2)
             ->set_level(0.99);
       },
       "row 1 output 0 interval 2 is at level 0.99, asked 0.9"},
      {"no_samples", false, [](auto* r) { SetShape(r, {}, 0); },
       "no sample_shape although return_samples was asked"},
      {"two_dimensional_shape", false,
       [](auto* r) {
         SetShape(r, {kSamples, kRows}, kSamples * kRows);
       },
       "sample_shape [3, 2] is not [T, B, D]"},
      {"one_sample_value_short", false,
       [](auto* r) { r->mutable_sample_values()->RemoveLast(); },
       "sample_shape [3, 2, 1] does not hold the 5 sample_values"},
      {"shape_rows_wrong", false,
       [](auto* r) {
         SetShape(r, {kSamples, 3, 1}, kSamples * 3);
       },
       "B is not the 2 rows sent"},
      {"shape_outputs_wrong", false,
       [](auto* r) {
         SetShape(r, {kSamples, kRows, 2}, kSamples * kRows * 2);
       },
       "D is not the 1 outputs per row"},
      {"shape_samples_not_samples", false,
       [](auto* r) {
         SetShape(r, {4, kRows, 1}, 4 * kRows);
       },
       "T is not the response's samples (3)"},
      {"zero_samples", false,
       [](auto* r) {
         r->set_samples(0);
         SetShape(r, {0, kRows, 1}, 0);
       },
       "T is not the response's samples (0) or is < 1"},
      {"negative_samples", false,
       [](auto* r) {
         r->set_samples(-3);
         SetShape(r, {-3, kRows, 1}, 6);
       },
       "T is not"},
      {"huge_samples", false,
       [](auto* r) {
         r->set_samples(std::numeric_limits<int32_t>::max());
         SetShape(r, {std::numeric_limits<int32_t>::max(), kRows, 1}, 6);
       },
       "does not hold the 6 sample_values"},
      {"task_unspecified", false,
       [](auto* r) { r->set_task(v1::TASK_UNSPECIFIED); },
       "task TASK_UNSPECIFIED is neither REGRESSION nor CLASSIFICATION"},
      {"classification_for_a_regression_model", false,
       [](auto* r) {
         *r = GoodClassification();
         SetShape(r, {kSamples, kRows, kClasses}, kSamples * kRows * kClasses);
       },
       "task CLASSIFICATION, the model's is REGRESSION",
       /*request_reveals=*/false},
      {"probabilities_short_in_one_row", true,
       [](auto* r) {
         r->mutable_rows(1)
             ->mutable_classification()
             ->mutable_probabilities()
             ->RemoveLast();
       },
       "row 1 has 2 class probabilities, expected 3"},
      {"predicted_class_is_the_class_count", true,
       [](auto* r) {
         r->mutable_rows(0)->mutable_classification()->set_predicted_class(3);
       },
       "row 0: predicted_class 3 is not in [0, 3)"},
      {"predicted_class_negative", true,
       [](auto* r) {
         r->mutable_rows(1)->mutable_classification()->set_predicted_class(-1);
       },
       "row 1: predicted_class -1 is not in [0, 3)"},
      {"predicted_class_huge", true,
       [](auto* r) {
         r->mutable_rows(1)->mutable_classification()->set_predicted_class(
             1 << 30);
       },
       "predicted_class 1073741824 is not in [0, 3)"},
      {"fewer_classes_than_the_model", true,
       [](auto* r) {
         for (auto& row : *r->mutable_rows()) {
           row.mutable_classification()->mutable_probabilities()->RemoveLast();
         }
         SetShape(r, {kSamples, kRows, 2}, kSamples * kRows * 2);
       },
       "row 0 has 2 class probabilities, expected 3",
       /*request_reveals=*/false},
      {"classification_samples_short", true,
       [](auto* r) { r->mutable_sample_values()->RemoveLast(); },
       "sample_shape [3, 2, 3] does not hold the 17 sample_values"},
  };
}

v1::PredictResponse BadResponse(const Case& c) {
  v1::PredictResponse r =
      c.classification ? GoodClassification() : GoodRegression();
  c.mutate(&r);
  return r;
}

v1::PredictRequest Request(bool classification) {
  v1::PredictRequest req;
  req.add_shape(kRows);
  req.add_shape(2);
  for (float v : {1.f, 2.f, 3.f, 4.f}) req.add_inputs(v);
  req.set_samples(kSamples);
  req.set_return_samples(true);
  if (!classification) {
    for (double l : CoverageLevels()) req.add_interval_levels(l);
  }
  return req;
}

PredictExpectation ModelExpectation(bool classification) {
  PredictExpectation e = ExpectationOf(Request(classification));
  e.task = classification ? v1::CLASSIFICATION : v1::REGRESSION;
  e.outputs = classification ? kClasses : 1;
  return e;
}

TEST(ValidatePredictResponseTest, AcceptsConsistentResponses) {
  EXPECT_TRUE(
      ValidatePredictResponse(GoodRegression(), ModelExpectation(false)).ok());
  EXPECT_TRUE(
      ValidatePredictResponse(GoodClassification(), ModelExpectation(true))
          .ok());
  // Outputs not known: taken from the first row.
  EXPECT_TRUE(
      ValidatePredictResponse(GoodRegression(), ExpectationOf(Request(false)))
          .ok());
  // Samples not asked and not sent.
  v1::PredictResponse no_samples = GoodClassification();
  SetShape(&no_samples, {}, 0);
  PredictExpectation e = ModelExpectation(true);
  e.return_samples = false;
  EXPECT_TRUE(ValidatePredictResponse(no_samples, e).ok());
  // No rows sent, none answered.
  v1::PredictResponse empty;
  empty.set_task(v1::REGRESSION);
  EXPECT_TRUE(ValidatePredictResponse(empty, PredictExpectation()).ok());
}

TEST(ValidatePredictResponseTest, ExpectationOfARequest) {
  PredictExpectation e = ExpectationOf(Request(false));
  EXPECT_EQ(e.task, v1::TASK_UNSPECIFIED);
  EXPECT_EQ(e.rows, kRows);
  EXPECT_EQ(e.outputs, 0);
  EXPECT_TRUE(e.return_samples);
  EXPECT_EQ(e.interval_levels, CoverageLevels());
  v1::PredictRequest one_row;
  one_row.add_shape(8);
  EXPECT_EQ(ExpectationOf(one_row).rows, 1);
  EXPECT_FALSE(ExpectationOf(one_row).return_samples);
}

TEST(ValidatePredictResponseTest, EveryInconsistencyIsNamed) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const absl::Status s = ValidatePredictResponse(
        BadResponse(c), ModelExpectation(c.classification));
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(s.message(), HasSubstr("inconsistent Predict response: "));
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

TEST(ValidatePredictResponseTest, SampleValuesWithoutAShape) {
  v1::PredictResponse r = GoodRegression();
  r.clear_sample_shape();
  PredictExpectation e = ModelExpectation(false);
  e.return_samples = false;
  EXPECT_THAT(ValidatePredictResponse(r, e).message(),
              HasSubstr("6 sample_values without a sample_shape"));
}

// Answers Predict with whatever the test set, and describes a model of the
// test's task.
class FakeInference final : public v1::Inference::Service {
 public:
  void Answer(v1::PredictResponse response, bool classification) {
    std::lock_guard<std::mutex> lock(mu_);
    response_ = std::move(response);
    classification_ = classification;
  }
  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest*,
                       v1::PredictResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    *response = response_;
    return grpc::Status::OK;
  }
  grpc::Status GetModelMetadata(grpc::ServerContext*,
                                const v1::GetModelMetadataRequest*,
                                v1::ModelMetadata* meta) override {
    std::lock_guard<std::mutex> lock(mu_);
    meta->set_name("fake");
    meta->set_version(1);
    meta->set_task(classification_ ? v1::CLASSIFICATION : v1::REGRESSION);
    meta->set_input_size(2);
    meta->set_output_size(classification_ ? kClasses : 1);
    meta->set_tau(1.0);
    meta->set_default_samples(kSamples);
    return grpc::Status::OK;
  }

 private:
  std::mutex mu_;
  v1::PredictResponse response_;
  bool classification_ = false;
};

struct Command {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

Command RunShell(const std::string& command) {
  Command c;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return c;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) c.output.append(buf, n);
  const int status = pclose(p);
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return c;
}

class FakeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    target_ = "127.0.0.1:" + std::to_string(port);
    ClientOptions o;
    o.target = target_;
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // The response as it arrives over the wire, unchecked.
  v1::PredictResponse Raw(const v1::PredictRequest& request) {
    grpc::ClientContext ctx;
    v1::PredictResponse raw;
    EXPECT_TRUE(client_->stub().Predict(&ctx, request, &raw).ok());
    return raw;
  }

  // mcdrop-client `command` against the fake, with a two-row file for eval
  // (two features, then the target or label).
  Command Cli(const std::string& command, bool classification) {
    const std::string csv = ::testing::TempDir() + "/fake_eval.csv";
    std::ofstream(csv) << "a,b,y\n1,2," << (classification ? 0 : 10) << "\n3,4,"
                       << (classification ? 1 : 11) << "\n";
    std::string flags = " --target " + target_ + " --samples 3";
    if (command == "predict") {
      flags += " --input '1,2;3,4' --return_samples";
      if (!classification) flags += " --intervals 0.5,0.8,0.9,0.95";
    } else {
      flags += " --file " + csv;
    }
    return RunShell(std::string(MCDROP_CLIENT) + " " + command + flags);
  }

  FakeInference fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
  std::unique_ptr<Client> client_;
};

TEST_F(FakeServerTest, ConsistentAnswersPass) {
  for (bool classification : {false, true}) {
    SCOPED_TRACE(classification ? "classification" : "regression");
    fake_.Answer(classification ? GoodClassification() : GoodRegression(),
                 classification);
    auto resp = client_->Predict(Request(classification));
    ASSERT_TRUE(resp.ok()) << resp.status();
    if (classification) {
      ClassificationEvaluator ev(kClasses);
      ASSERT_TRUE(ev.Add(*resp, {0, 1}).ok());
      EXPECT_EQ(ev.Result().n, 2);
      EXPECT_DOUBLE_EQ(ev.Result().accuracy, 0.5);
    } else {
      RegressionEvaluator ev(1.0, 1);
      ASSERT_TRUE(ev.Add(*resp, {10.0f, 11.0f}).ok());
      EXPECT_EQ(ev.Result().n, 2);
      EXPECT_DOUBLE_EQ(ev.Result().rmse, 0.0);
    }
    for (const char* command : {"predict", "eval"}) {
      const Command c = Cli(command, classification);
      EXPECT_EQ(c.exit_code, 0) << command << "\n" << c.output;
    }
  }
}

TEST_F(FakeServerTest, TheClientLibraryRejectsWhatTheRequestReveals) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    fake_.Answer(BadResponse(c), c.classification);
    auto resp = client_->Predict(Request(c.classification));
    if (c.request_reveals) {
      EXPECT_EQ(resp.status().code(), absl::StatusCode::kInternal);
      EXPECT_THAT(resp.status().message(),
                  HasSubstr("inconsistent Predict response"));
    } else {
      // Consistent with the request; only the model's task or size can tell.
      EXPECT_TRUE(resp.ok()) << resp.status();
    }
  }
}

TEST_F(FakeServerTest, TheEvaluatorsRejectEveryInconsistency) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    fake_.Answer(BadResponse(c), c.classification);
    const v1::PredictResponse raw = Raw(Request(c.classification));
    absl::Status s;
    int added;
    if (c.classification) {
      ClassificationEvaluator ev(kClasses);
      s = ev.Add(raw, {0, 1});
      added = ev.Result().n;
    } else {
      RegressionEvaluator ev(1.0, 1);
      s = ev.Add(raw, {10.0f, 11.0f});
      added = ev.Result().n;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(s.message(), HasSubstr(c.message));
    EXPECT_EQ(added, 0);
  }
}

TEST_F(FakeServerTest, McdropClientFailsCleanlyOnEveryInconsistency) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    fake_.Answer(BadResponse(c), c.classification);
    for (const char* command : {"predict", "eval"}) {
      const Command run = Cli(command, c.classification);
      EXPECT_EQ(run.exit_code, 1) << command << "\n" << run.output;
      EXPECT_THAT(run.output, HasSubstr("error: INTERNAL: inconsistent "
                                        "Predict response"))
          << command;
    }
  }
}

}  // namespace
}  // namespace mcdrop
