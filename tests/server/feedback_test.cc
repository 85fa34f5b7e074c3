// Copyright 2026 The mcdrop Authors.
//
// The feedback monitor: ids, joins, the bounded store, every rolling figure
// against a hand-computed case, adaptive conformal inference, hostile
// feedback; then Feedback end to end over gRPC and HTTP.

#include "server/feedback.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "absl/strings/str_format.h"
#include "core/conformal.h"
#include "core/intervals.h"
#include "mcdrop/v1/inference.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/http.h"
#include "tests/testing/metrics.h"
#include "tests/testing/models.h"

namespace mcdrop::server {
namespace {

using v1::FeedbackRequest;
using v1::FeedbackResponse;
using v1::FeedbackResult;

constexpr double kInf = std::numeric_limits<double>::infinity();

// A served model: a regression MLP with one output (tau = 4: noise std 0.5)
// or a 3-class classifier, calibrated with `scores` when given.
std::shared_ptr<ServedModel> Served(Task task, std::vector<double> scores,
                                    const std::string& name = "m",
                                    int64_t version = 1) {
  const int out = task == Task::kRegression ? 1 : 3;
  ModelSpec spec = testing::RandomSpec({4, 8, out}, {0.1f, 0.1f}, task,
                                       Activation::kRelu, 5);
  if (!scores.empty()) {
    Calibration c;
    c.score = task == Task::kRegression ? ConformalScore::kNormalizedResidual
                                        : ConformalScore::kLac;
    c.samples = 2;
    c.scores = {std::move(scores)};
    spec.calibration = c;
  }
  return std::make_shared<ServedModel>(
      ServedModel{name, version, "", absl::Now(), testing::MustCreate(spec)});
}

// One regression row: T = 2 passes {0, 2} (mean 1, model variance 1).
AdaptivePrediction RegressionAnswer(int rows = 1) {
  Prediction p;
  p.task = Task::kRegression;
  p.rows = rows;
  p.outputs = 1;
  p.samples = 2;
  p.mean.assign(rows, 1.0);
  p.model_variance.assign(rows, 1.0);
  p.variance.assign(rows, 1.25);
  for (int t = 0; t < 2; ++t) {
    for (int r = 0; r < rows; ++r) p.sample_values.push_back(2.0f * t);
  }
  return FixedAnswer(std::move(p));
}

AdaptivePrediction ClassAnswer(std::vector<std::vector<double>> probs,
                               std::vector<double> mi) {
  Prediction p;
  p.task = Task::kClassification;
  p.rows = static_cast<int>(probs.size());
  p.outputs = 3;
  p.samples = 2;
  for (const auto& row : probs) {
    p.mean.insert(p.mean.end(), row.begin(), row.end());
    p.model_variance.insert(p.model_variance.end(), 3, 0.0);
    p.predicted_class.push_back(static_cast<int>(
        std::max_element(row.begin(), row.end()) - row.begin()));
  }
  p.mutual_information = mi;
  p.entropy.assign(p.rows, 0.0);
  p.variation_ratio.assign(p.rows, 0.0);
  return FixedAnswer(std::move(p));
}

PredictPlan Plan(FeedbackMonitor& f, const ServedModel& m) {
  PredictPlan plan;
  plan.rows = 1;
  plan.options.samples = 2;
  f.Prepare(m, &plan);
  return plan;
}

FeedbackRequest Targets(const std::string& model,
                        std::vector<std::pair<std::string, double>> items) {
  FeedbackRequest r;
  r.set_model(model);
  for (const auto& [id, y] : items) {
    auto* it = r.add_items();
    it->set_id(id);
    it->add_targets(y);
  }
  return r;
}

FeedbackRequest Labels(const std::string& model,
                       std::vector<std::pair<std::string, int>> items) {
  FeedbackRequest r;
  r.set_model(model);
  for (const auto& [id, y] : items) {
    auto* it = r.add_items();
    it->set_id(id);
    it->set_label(y);
  }
  return r;
}

class FeedbackTest : public ::testing::Test {
 protected:
  void Make(FeedbackOptions o = {}) {
    registry_ = std::make_shared<prometheus::Registry>();
    monitor_ = std::make_unique<FeedbackMonitor>(o, registry_.get());
  }
  // The value of the sample whose name and labels contain every part.
  double Value(const std::string& name, std::vector<std::string> parts = {}) {
    const std::string text =
        prometheus::TextSerializer().Serialize(registry_->Collect());
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) {
        continue;
      }
      bool all = true;
      for (const auto& p : parts) all &= line.find(p) != std::string::npos;
      if (all) return std::stod(line.substr(line.rfind(' ') + 1));
    }
    ADD_FAILURE() << "no sample " << name;
    return std::numeric_limits<double>::quiet_NaN();
  }
  FeedbackResponse Submit(const FeedbackRequest& r) {
    FeedbackResponse out;
    EXPECT_TRUE(monitor_->Submit(r, &out).ok());
    return out;
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<FeedbackMonitor> monitor_;
};

TEST_F(FeedbackTest, IdsAreDistinctAndWellFormed) {
  Make();
  auto m = Served(Task::kRegression, {});
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id =
        monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
    EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{12}-[0-9a-f]{16}")))
        << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  // Before any feedback the figures are NaN (no data), not 0.
  EXPECT_EQ(Value("mcdrop_feedback_window_observations"), 0);
  EXPECT_TRUE(std::isnan(Value("mcdrop_feedback_rmse")));
  EXPECT_TRUE(std::isnan(
      Value("mcdrop_feedback_coverage", {"interval=\"mixture\"", "0.9"})));
  // Deterministic mode keeps nothing; neither does a store of size 0.
  PredictPlan det = Plan(*monitor_, *m);
  det.options.mode = PredictMode::kDeterministic;
  EXPECT_EQ(monitor_->Record(*m, det, RegressionAnswer()), "");
  Make(FeedbackOptions{.store_bytes = 0});
  EXPECT_EQ(monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer()), "");
  FeedbackResponse out;
  EXPECT_EQ(monitor_->Submit(Targets("m", {}), &out).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(FeedbackTest, RegressionFiguresByHand) {
  Make();
  // Nine calibration scores 0.1 .. 0.9: q at 50% is the 5th (0.5), at 80%
  // the 8th (0.8), at 90% the 9th (0.9), at 95% +inf (ceil(9.5) > 9).
  auto m =
      Served(Task::kRegression, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9});
  const std::string id =
      monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
  const double y = 1.5;
  FeedbackResponse r = Submit(Targets("m", {{id + ":0", y}}));
  ASSERT_EQ(r.results_size(), 1);
  EXPECT_EQ(r.results(0).outcome(), FeedbackResult::ACCEPTED)
      << r.results(0).message();
  EXPECT_EQ(r.accepted(), 1);

  // The predictive: (N(0, 0.25) + N(2, 0.25)) / 2; std sqrt(1 + 0.25).
  const double s = 0.5, std = std::sqrt(1.25);
  auto Phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double pit = (Phi(y / s) + Phi((y - 2) / s)) / 2;
  auto N = [&](double mu) {
    return std::exp(-0.5 * std::pow((y - mu) / s, 2)) /
           (s * std::sqrt(2 * M_PI));
  };
  const double ll = std::log((N(0) + N(2)) / 2);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_window_observations"), 1);
  EXPECT_NEAR(Value("mcdrop_feedback_log_likelihood"), ll, 1e-12);
  EXPECT_NEAR(Value("mcdrop_feedback_rmse"), 0.5, 1e-12);
  const int bin = static_cast<int>(pit * 10);  // pit = 0.579: bin (0.5, 0.6]
  EXPECT_EQ(bin, 5);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_pit", {"bin_upper=\"0.6\""}), 1);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_pit", {"bin_upper=\"0.5\""}), 0);
  // Mixture intervals: covered when the exact mixture CDF at y lies within
  // (1 - level) / 2 and (1 + level) / 2.
  for (double level : kMonitoredLevels) {
    const bool inside = pit >= (1 - level) / 2 && pit <= (1 + level) / 2;
    EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_coverage",
                           {"interval=\"mixture\"",
                            "level=\"" + absl::StrFormat("%g", level) + "\""}),
                     inside ? 1 : 0)
        << level;
  }
  // Conformal: |y - mean| / std = 0.447: inside q = 0.5, 0.8, 0.9, +inf.
  EXPECT_NEAR(0.5 / std, 0.4472, 1e-4);
  for (const char* level : {"0.5", "0.8", "0.9", "0.95"}) {
    EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_coverage",
                           {"interval=\"conformal\"",
                            std::string("level=\"") + level + "\""}),
                     1);
  }
  // y = 1.6: score 0.537 > 0.5, missed at 50% only. The window holds both.
  const std::string id2 =
      monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
  Submit(Targets("m", {{id2 + ":0", 1.6}}));
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_coverage",
                         {"interval=\"conformal\"", "level=\"0.5\""}),
                   0.5);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_covered_total",
                         {"kind=\"conformal\"", "level=\"0.5\""}),
                   1);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_observations_total"), 2);
  EXPECT_NEAR(Value("mcdrop_feedback_rmse"), std::sqrt((0.25 + 0.36) / 2),
              1e-12);
}

TEST_F(FeedbackTest, ClassificationFiguresByHand) {
  Make();
  // LAC scores 1 - p_y; nine of them 0.1 .. 0.9: q at 80% = 0.8.
  auto m = Served(Task::kClassification,
                  {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9});
  const std::string id = monitor_->Record(
      *m, Plan(*monitor_, *m),
      ClassAnswer({{0.7, 0.2, 0.1}, {0.5, 0.3, 0.2}}, {0.05, 0.3}));
  FeedbackResponse r = Submit(Labels("m", {{id + ":0", 0}, {id + ":1", 1}}));
  EXPECT_EQ(r.accepted(), 2);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_accuracy"), 0.5);
  EXPECT_NEAR(Value("mcdrop_feedback_nll"),
              (-std::log(0.7) - std::log(0.3)) / 2, 1e-12);
  EXPECT_NEAR(Value("mcdrop_feedback_brier"),
              ((0.09 + 0.04 + 0.01) + (0.25 + 0.49 + 0.04)) / 2, 1e-12);
  // Confidences 0.7 (right) and 0.5 (wrong), in bins of their own.
  EXPECT_NEAR(Value("mcdrop_feedback_ece"), (0.3 + 0.5) / 2, 1e-12);
  // The wrong answer has the larger mutual information.
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_mi_auroc"), 1.0);
  // Sets at 50% (q = 0.5): {0} for row 0 (covers 0), {0} for row 1 (misses
  // 1). At 80% (q = 0.8): {0, 1} and {0, 1, 2}: both covered.
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_set_coverage", {"level=\"0.5\""}),
                   0.5);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_set_size", {"level=\"0.5\""}), 1.0);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_set_coverage", {"level=\"0.8\""}),
                   1.0);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_set_size", {"level=\"0.8\""}), 2.5);
}

TEST_F(FeedbackTest, JoinsReportEveryItemAndCorruptNothing) {
  Make();
  auto m = Served(Task::kRegression, {});
  auto other = Served(Task::kRegression, {}, "other");
  auto v2 = Served(Task::kRegression, {}, "m", 2);
  const std::string id =
      monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer(2));
  const std::string oid =
      monitor_->Record(*other, Plan(*monitor_, *other), RegressionAnswer());
  const std::string vid =
      monitor_->Record(*v2, Plan(*monitor_, *v2), RegressionAnswer());
  FeedbackRequest req = Targets(
      "m", {{id + ":0", std::nan("")},                 // invalid
            {id + ":0", kInf},                         // invalid
            {id + ":9", 1.0},                          // no such row
            {oid + ":0", 1.0},                         // another model
            {"000000000001-0000000000000001:0", 1.0},  // long gone
            {FormatPredictionId(absl::ToUnixMillis(absl::Now()), 42) + ":0",
             1.0},  // never made
            {"not an id", 1.0},
            {std::string(100000, 'x'), 1.0},
            {id + ":0", 1.5},          // accepted
            {id + ":0", 1.5}});        // duplicate
  req.add_items()->set_id(id + ":1");  // no target
  auto* both = req.add_items();
  both->set_id(id + ":1");
  both->add_targets(1);
  both->set_label(0);
  FeedbackResponse r = Submit(req);
  ASSERT_EQ(r.results_size(), req.items_size());
  using R = FeedbackResult;
  const std::vector<R::Outcome> want = {
      R::INVALID,  R::INVALID,    R::UNKNOWN_ID, R::WRONG_MODEL,
      R::EXPIRED,  R::UNKNOWN_ID, R::UNKNOWN_ID, R::UNKNOWN_ID,
      R::ACCEPTED, R::DUPLICATE,  R::INVALID,    R::INVALID};
  for (int i = 0; i < r.results_size(); ++i) {
    EXPECT_EQ(r.results(i).outcome(), want[i])
        << i << ": " << r.results(i).message();
    EXPECT_LE(r.results(i).id().size(), 64u);
    if (want[i] != R::ACCEPTED) {
      EXPECT_FALSE(r.results(i).message().empty());
    }
  }
  EXPECT_EQ(r.accepted(), 1);
  EXPECT_NE(r.results(0).message().find("finite"), std::string::npos);
  EXPECT_NE(r.results(3).message().find("\"other\""), std::string::npos);
  // Only the accepted one is in the figures; the row left open takes a
  // good target later; the version named must match.
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_window_observations",
                         {"model=\"m\"", "version=\"1\""}),
                   1);
  FeedbackRequest later = Targets("m", {{id + ":1", 0.5}, {vid + ":0", 0.5}});
  later.set_version(1);
  r = Submit(later);
  EXPECT_EQ(r.results(0).outcome(), R::ACCEPTED) << r.results(0).message();
  EXPECT_EQ(r.results(1).outcome(), R::WRONG_MODEL);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_items_total",
                         {"model=\"m\"", "outcome=\"invalid\""}),
                   4);
  // Both rows of `id` have feedback: the prediction keeps only that, and
  // more feedback for it is a duplicate.
  EXPECT_EQ(monitor_->stored_predictions(), 3);
  r = Submit(Targets("m", {{id + ":0", 0.5}}));
  EXPECT_EQ(r.results(0).outcome(), R::DUPLICATE);
}

TEST_F(FeedbackTest, HostileBatchesAreRefusedWhole) {
  Make(FeedbackOptions{.max_items = 8});
  auto m = Served(Task::kRegression, {});
  const std::string id =
      monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
  FeedbackRequest big;
  big.set_model("m");
  for (int i = 0; i < 9; ++i) big.add_items()->set_id(id + ":0");
  FeedbackResponse out;
  absl::Status s = monitor_->Submit(big, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("at most 8"), std::string::npos);
  EXPECT_EQ(monitor_->Submit(Targets("", {{id + ":0", 1}}), &out).code(),
            absl::StatusCode::kInvalidArgument);
  // A flood of unknown ids: each reported, nothing joined, the row intact.
  for (int k = 0; k < 100; ++k) {
    FeedbackRequest flood;
    flood.set_model("m");
    for (int i = 0; i < 8; ++i) {
      flood.add_items()->set_id(
          FormatPredictionId(absl::ToUnixMillis(absl::Now()), k * 8 + i) +
          ":0");
    }
    FeedbackResponse fr = Submit(flood);
    EXPECT_EQ(fr.accepted(), 0);
  }
  EXPECT_EQ(Submit(Targets("m", {{id + ":0", 1}})).accepted(), 1);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_items_total",
                         {"model=\"m\"", "outcome=\"unknown_id\""}),
                   800);
}

TEST_F(FeedbackTest, StoreEvictsBySizeAndAgeAndSaysExpired) {
  Make();
  auto m = Served(Task::kRegression, {});
  // One prediction's size, then a store that holds 10 of them.
  monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
  const int64_t one = monitor_->stored_bytes();
  ASSERT_GT(one, 0);
  Make(FeedbackOptions{.store_bytes = 10 * one});
  std::vector<std::string> ids;
  for (int i = 0; i < 15; ++i) {
    ids.push_back(
        monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer()));
  }
  EXPECT_EQ(monitor_->stored_predictions(), 10);
  EXPECT_LE(monitor_->stored_bytes(), 10 * one);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_evictions_total", {"size"}), 5);
  FeedbackResponse r =
      Submit(Targets("m", {{ids[0] + ":0", 1}, {ids[14] + ":0", 1}}));
  EXPECT_EQ(r.results(0).outcome(), FeedbackResult::EXPIRED);
  EXPECT_EQ(r.results(1).outcome(), FeedbackResult::ACCEPTED);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_store_predictions"), 10);
  EXPECT_LT(monitor_->stored_bytes(), 10 * one);  // the joined one shrank

  Make(FeedbackOptions{.max_age = absl::Milliseconds(20)});
  const std::string old =
      monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  r = Submit(Targets("m", {{old + ":0", 1}}));
  EXPECT_EQ(r.results(0).outcome(), FeedbackResult::EXPIRED);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_evictions_total", {"age"}), 1);
  EXPECT_EQ(monitor_->stored_predictions(), 0);
}

TEST_F(FeedbackTest, WindowKeepsTheLastObservations) {
  Make(FeedbackOptions{.window = 3});
  auto m = Served(Task::kRegression, {});
  for (double y : {100.0, 1.0, 1.0, 1.0}) {  // the 100 falls out
    const std::string id =
        monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
    Submit(Targets("m", {{id + ":0", y}}));
  }
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_window_observations"), 3);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_rmse"), 0);
  EXPECT_DOUBLE_EQ(Value("mcdrop_feedback_observations_total"), 4);
}

TEST_F(FeedbackTest, AdaptiveConformalWidensAfterMissesAndNarrowsBack) {
  std::vector<double> scores;
  for (int i = 1; i <= 199; ++i) scores.push_back(i / 100.0);  // 0.01 .. 1.99
  const double rate = 0.05;
  Make(FeedbackOptions{.adaptive_rate = rate});
  auto m = Served(Task::kRegression, scores);
  const auto q0 = monitor_->Quantiles(*m);
  ASSERT_NE(q0, nullptr);
  EXPECT_EQ((*q0)[0][2], ConformalQuantile(scores, 0.9));
  // Targets far outside every interval: each level's alpha falls by
  // rate * level per miss (ACI: alpha += rate (alpha* - 1)).
  for (int i = 0; i < 3; ++i) {
    const std::string id =
        monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
    Submit(Targets("m", {{id + ":0", 1000.0}}));
  }
  const double alpha90 = 0.1 - 3 * rate * 0.9;
  EXPECT_NEAR(Value("mcdrop_conformal_adapted_level", {"level=\"0.9\""}),
              1 - alpha90, 1e-12);
  const auto q1 = monitor_->Quantiles(*m);
  EXPECT_EQ((*q1)[0][2], AdaptedQuantile(scores, alpha90));
  EXPECT_GT((*q1)[0][2], (*q0)[0][2]);
  // 95%: alpha 0.05 - 3 * 0.05 * 0.95 < 0: the interval is everything.
  EXPECT_EQ((*q1)[0][3], kInf);
  // A plan made now carries the adapted quantiles into the response.
  EXPECT_EQ(Plan(*monitor_, *m).monitored, q1);
  // Hits move alpha back up by rate * (1 - level) each.
  for (int i = 0; i < 10; ++i) {
    const std::string id =
        monitor_->Record(*m, Plan(*monitor_, *m), RegressionAnswer());
    Submit(Targets("m", {{id + ":0", 1.0}}));
  }
  EXPECT_NEAR(Value("mcdrop_conformal_adapted_level", {"level=\"0.9\""}),
              1 - (alpha90 + 10 * rate * 0.1), 1e-12);
}

TEST_F(FeedbackTest, OptionsAreChecked) {
  EXPECT_TRUE(ValidateFeedbackOptions({}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions({.store_bytes = -1}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions({.max_age = absl::ZeroDuration()}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions({.window = 0}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions({.max_items = 0}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions({.max_points = 0}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions({.adaptive_rate = 1.0}).ok());
  EXPECT_FALSE(ValidateFeedbackOptions(
                   {.adaptive_rate = std::numeric_limits<double>::quiet_NaN()})
                   .ok());
}

// ---- Over the wire ----------------------------------------------------

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

class FeedbackServerTest : public ::testing::Test {
 protected:
  void Start(double rate) {
    auto concrete = Model::Load(kConcrete);
    ASSERT_TRUE(concrete.ok());
    ModelSpec spec = concrete->spec();
    Calibration c;
    c.samples = 50;
    std::vector<double> scores;
    for (int i = 1; i <= 99; ++i) scores.push_back(i / 40.0);  // to 2.475
    c.scores = {scores};
    spec.calibration = c;
    const std::string path =
        ::testing::TempDir() + "/feedback_concrete.safetensors";
    ASSERT_TRUE(testing::MustCreate(spec).Save(path).ok());
    ServerOptions o;
    o.models = {"concrete=" + path};
    o.host = "127.0.0.1";
    o.port = 0;
    o.http_port = 0;
    o.metrics_address = "127.0.0.1:0";
    o.threads = 2;
    o.feedback.adaptive_rate = rate;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::Inference::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials()));
  }
  v1::PredictResponse Predict(int rows, v1::Mode mode = v1::MONTE_CARLO) {
    v1::PredictRequest r;
    r.set_model("concrete");
    r.add_shape(rows);
    r.add_shape(8);
    for (int i = 0; i < rows * 8; ++i) r.add_inputs(100.0f + 7 * (i % 8) + i);
    r.set_samples(100);
    r.set_mode(mode);
    r.add_interval_levels(0.9);
    v1::PredictResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->Predict(&ctx, r, &resp).ok());
    return resp;
  }
  grpc::Status Feedback(const FeedbackRequest& r, FeedbackResponse* out) {
    grpc::ClientContext ctx;
    return stub_->Feedback(&ctx, r, out);
  }
  std::pair<int, nlohmann::json> Http(const std::string& method,
                                      const std::string& path,
                                      const std::string& body) {
    const int fd = testing::Connect(server_->http_port());
    EXPECT_GE(fd, 0);
    testing::Send(fd, absl::StrCat(method, " ", path,
                                   " HTTP/1.1\r\nContent-Length: ", body.size(),
                                   "\r\n\r\n", body));
    const std::string reply = testing::ReadOne(fd);
    close(fd);
    const int status = std::stoi(reply.substr(9, 3));
    return {status,
            nlohmann::json::parse(reply.substr(reply.find("\r\n\r\n") + 4),
                                  nullptr, false)};
  }
  std::string Scrape() {
    return testing::Scrape(server_->metrics_ports().at(0));
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(FeedbackServerTest, PredictGivesIdsAndFeedbackIsJoined) {
  Start(0);
  const v1::PredictResponse p = Predict(3);
  ASSERT_TRUE(std::regex_match(p.prediction_id(),
                               std::regex("[0-9a-f]{12}-[0-9a-f]{16}")));
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(p.rows(r).id(), p.prediction_id() + ":" + std::to_string(r));
  }
  // Observed: the means themselves (inside every interval), then a value
  // far outside for row 2.
  FeedbackRequest f;
  f.set_model("concrete");
  for (int r = 0; r < 3; ++r) {
    auto* it = f.add_items();
    it->set_id(p.rows(r).id());
    it->add_targets(r < 2 ? p.rows(r).outputs(0).mean()
                          : p.rows(r).outputs(0).mean() + 1000);
  }
  FeedbackResponse out;
  ASSERT_TRUE(Feedback(f, &out).ok());
  EXPECT_EQ(out.accepted(), 3);
  const std::string text = Scrape();
  const std::string v = "model=\"concrete\",version=\"1\"";
  EXPECT_EQ(testing::Metric(text, "mcdrop_feedback_window_observations", v), 3);
  EXPECT_NEAR(testing::Metric(text, "mcdrop_feedback_coverage",
                              "interval=\"mixture\",level=\"0.9\"," + v),
              2.0 / 3, 1e-12);
  EXPECT_NEAR(testing::Metric(text, "mcdrop_feedback_coverage",
                              "interval=\"conformal\",level=\"0.9\"," + v),
              2.0 / 3, 1e-12);
  EXPECT_NEAR(testing::Metric(text, "mcdrop_feedback_rmse", v),
              1000 / std::sqrt(3.0), 1e-6);
  EXPECT_EQ(testing::Metric(text, "mcdrop_feedback_items_total",
                            "model=\"concrete\",outcome=\"accepted\""),
            3);
  // Again: duplicates, reported per item over gRPC.
  ASSERT_TRUE(Feedback(f, &out).ok());
  EXPECT_EQ(out.results(0).outcome(), FeedbackResult::DUPLICATE);
  // A deterministic prediction has no id.
  EXPECT_EQ(Predict(1, v1::DETERMINISTIC).prediction_id(), "");
  // Errors that fail the whole call.
  FeedbackRequest none;
  EXPECT_EQ(Feedback(none, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FeedbackServerTest, OpenInferenceProtocolIdsAndHttpFeedback) {
  Start(0);
  const std::string body =
      R"({"parameters": {"samples": 100, "seed": 3},
          "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                      "data": [540, 0, 0, 162, 2.5, 1040, 676, 28]}],
          "outputs": [{"name": "mean"}]})";
  auto [status, doc] = Http("POST", "/v2/models/concrete/infer", body);
  ASSERT_EQ(status, 200) << doc.dump();
  const std::string id = doc["parameters"]["prediction_id"];
  const double mean = doc["outputs"][0]["data"][0];
  auto [fs, fdoc] =
      Http("POST", "/v2/models/concrete/versions/1/feedback",
           absl::StrCat(R"({"items": [{"id": ")", id, R"(:0", "targets": [)",
                        mean, R"(]}, {"id": "nope", "targets": 1}, {"id": ")",
                        id, R"(:0", "label": 2}]})"));
  ASSERT_EQ(fs, 200) << fdoc.dump();
  SCOPED_TRACE(fdoc.dump());
  EXPECT_EQ(fdoc["accepted"], 1);
  EXPECT_EQ(fdoc["results"][0]["outcome"], "ACCEPTED");
  EXPECT_EQ(fdoc["results"][1]["outcome"], "UNKNOWN_ID");
  EXPECT_EQ(fdoc["results"][2]["outcome"], "DUPLICATE");
  // Bad bodies and methods get a reason.
  for (const char* bad :
       {"not json", "[]", R"({"items": 3})", R"({"items": [{"id": 5}]})",
        R"({"items": [{"id": "x", "targets": ["a"]}]})",
        R"({"items": [{"id": "x", "label": 1.5}]})",
        R"({"items": [], "extra": 1})"}) {
    auto [bs, bdoc] = Http("POST", "/v2/models/concrete/feedback", bad);
    EXPECT_EQ(bs, 400) << bad;
    EXPECT_TRUE(bdoc.contains("error")) << bad;
  }
  EXPECT_EQ(Http("GET", "/v2/models/concrete/feedback", "").first, 405);
  EXPECT_EQ(Http("POST", "/v2/models/concrete/versions/x/feedback",
                 R"({"items": []})")
                .first,
            400);
}

TEST_F(FeedbackServerTest, AdaptationWidensTheServedConformalIntervals) {
  Start(0.05);
  const v1::PredictResponse before = Predict(1);
  const double w0 = before.rows(0).outputs(0).conformal_intervals(0).upper() -
                    before.rows(0).outputs(0).conformal_intervals(0).lower();
  for (int i = 0; i < 5; ++i) {  // every interval misses
    const v1::PredictResponse p = Predict(1);
    FeedbackRequest f;
    f.set_model("concrete");
    auto* it = f.add_items();
    it->set_id(p.rows(0).id());
    it->add_targets(p.rows(0).outputs(0).mean() + 1e6);
    FeedbackResponse out;
    ASSERT_TRUE(Feedback(f, &out).ok());
    ASSERT_EQ(out.accepted(), 1);
  }
  const v1::PredictResponse after = Predict(1);
  const auto& iv = after.rows(0).outputs(0).conformal_intervals(0);
  const double std = after.rows(0).outputs(0).std();
  // Three misses take alpha to 0.1 - 3 * 0.05 * 0.9 < 0: the interval is
  // everything, so the last two "cover" and move alpha up by 0.05 * 0.1
  // each, still below 0.
  const double alpha = 0.1 - 3 * 0.05 * 0.9 + 2 * 0.05 * 0.1;
  EXPECT_TRUE(std::isinf(iv.upper() - iv.lower())) << iv.upper() - iv.lower();
  EXPECT_GT(w0, 0);
  EXPECT_TRUE(std::isfinite(w0 / std));
  EXPECT_NEAR(testing::Metric(Scrape(), "mcdrop_conformal_adapted_level",
                              "level=\"0.9\",model=\"concrete\""),
              1 - alpha, 1e-12);
}

}  // namespace
}  // namespace mcdrop::server
