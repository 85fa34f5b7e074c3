// Copyright 2026 The mcdrop Authors.
//
// Adaptive T: rows stop at their target with the figures of a fixed-T
// request of the T they used (bit for bit), the reported standard errors
// are those of the returned samples, the cap, thread independence, the
// running estimates and stopping through them, and refusals.

#include "core/adaptive.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <set>
#include <string>

#include "tests/testing/models.h"
#include "tests/testing/sync.h"

namespace mcdrop {
namespace {

using ::mcdrop::testing::RandomInputs;
using ::mcdrop::testing::View;

// Rows around the training data: raw inputs = z * std + mean.
RowMajorMatrixXf InputsFor(const Model& model, int rows, uint32_t seed) {
  RowMajorMatrixXf x = RandomInputs(rows, model.input_size(), seed);
  const ModelSpec& spec = model.spec();
  if (spec.input_mean.size() == x.cols()) {
    for (int r = 0; r < rows; ++r) {
      x.row(r) = x.row(r).cwiseProduct(spec.input_std.transpose()) +
                 spec.input_mean.transpose();
    }
  }
  return x;
}

Model Load(const char* name) {
  auto m =
      Model::Load(std::string(MCDROP_MODELS_DIR "/") + name + ".safetensors");
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// The sample standard deviation of row r's output d over its returned
// samples, divided by sqrt(T): the standard error the samples show.
double SampleStandardError(const AdaptivePrediction& p, int r, int d) {
  const std::vector<float>& v = p.row_samples[r];
  const int D = p.prediction.outputs, T = static_cast<int>(v.size()) / D;
  double mean = 0, ss = 0;
  for (int t = 0; t < T; ++t) mean += v[static_cast<size_t>(t) * D + d];
  mean /= T;
  for (int t = 0; t < T; ++t) {
    const double e = v[static_cast<size_t>(t) * D + d] - mean;
    ss += e * e;
  }
  return std::sqrt(ss / (T - 1) / T);
}

// Row r of `p` equals row r of the fixed-T request `one`, bit for bit.
void ExpectRowEquals(const AdaptivePrediction& p, const Prediction& one,
                     int r) {
  const Prediction& a = p.prediction;
  const int D = a.outputs;
  for (int d = 0; d < D; ++d) {
    const size_t i = static_cast<size_t>(r) * D + d;
    EXPECT_EQ(a.mean[i], one.mean[i]) << "row " << r << " output " << d;
    EXPECT_EQ(a.model_variance[i], one.model_variance[i]);
    if (!one.variance.empty()) {
      EXPECT_EQ(a.variance[i], one.variance[i]);
    }
    if (!one.votes.empty()) {
      EXPECT_EQ(a.votes[i], one.votes[i]);
    }
  }
  if (a.task == Task::kClassification) {
    EXPECT_EQ(a.predicted_class[r], one.predicted_class[r]);
    EXPECT_EQ(a.entropy[r], one.entropy[r]);
    EXPECT_EQ(a.mutual_information[r], one.mutual_information[r]);
    EXPECT_EQ(a.variation_ratio[r], one.variation_ratio[r]);
  }
  // The returned samples are that request's passes of this row.
  if (!p.row_samples.empty()) {
    const int T = p.samples_per_row[r];
    ASSERT_EQ(p.row_samples[r].size(), static_cast<size_t>(T) * D);
    for (int t = 0; t < T; ++t) {
      for (int d = 0; d < D; ++d) {
        ASSERT_EQ(p.row_samples[r][static_cast<size_t>(t) * D + d],
                  one.Sample(t, r, d))
            << "row " << r << " pass " << t;
      }
    }
  }
}

// Checks every row of an adaptive answer against fixed-T requests: it met
// the target (or reached the cap), its figures are those of its T passes,
// its standard error is that of its samples, and at half its T (the round
// before) it had not met the target.
void CheckRows(const Model& model, const RowMajorMatrixXf& x,
               const PredictOptions& opt, const AdaptiveOptions& a,
               const AdaptivePrediction& p) {
  Engine engine({.threads = 2});
  const int B = static_cast<int>(x.rows()), D = model.output_size();
  const bool classification = model.task() == Task::kClassification;
  auto target = [&](const Prediction& q, size_t i) {
    const double scale = classification ? std::sqrt(q.mean[i] * (1 - q.mean[i]))
                                        : std::sqrt(q.variance[i]);
    return std::min(a.target_abs > 0 ? a.target_abs : INFINITY,
                    a.target_rel > 0 ? a.target_rel * scale : INFINITY);
  };
  for (int r = 0; r < B; ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    const int T = p.samples_per_row[r];
    ASSERT_GE(T, a.min_samples);
    PredictOptions fixed = opt;
    fixed.samples = T;
    fixed.return_samples = true;
    auto one = engine.Predict(model, View(x), fixed);
    ASSERT_TRUE(one.ok()) << one.status();
    ExpectRowEquals(p, *one, r);
    for (int d = 0; d < D; ++d) {
      const size_t i = static_cast<size_t>(r) * D + d;
      const double se = p.standard_error[i];
      EXPECT_NEAR(se, SampleStandardError(p, r, d), 1e-6 * se + 1e-12);
      if (p.target_met[r]) {
        EXPECT_LE(se, target(p.prediction, i));
      }
    }
    if (!p.target_met[r]) {
      EXPECT_EQ(T, a.max_samples);
    }
    if (T > a.min_samples) {  // the round before had not met it
      fixed.samples = T / 2;
      auto half = engine.Predict(model, View(x), fixed);
      ASSERT_TRUE(half.ok());
      bool met = true;
      for (int d = 0; d < D; ++d) {
        const size_t i = static_cast<size_t>(r) * D + d;
        met &= std::sqrt(half->model_variance[i] / (T / 2 - 1)) <=
               target(*half, i);
      }
      EXPECT_FALSE(met);
    }
  }
}

TEST(AdaptiveTest, RegressionRowsStopAtTheirTarget) {
  const Model model = Load("concrete");
  const RowMajorMatrixXf x = InputsFor(model, 8, 5);
  PredictOptions opt;
  opt.seed = 17;
  opt.return_samples = true;
  AdaptiveOptions a;
  a.target_rel = 0.02;  // 2% of the predictive std
  a.min_samples = 50;
  a.max_samples = 1 << 16;
  Engine engine({.threads = 2});
  auto p = PredictAdaptive(engine, model, View(x), opt, a);
  ASSERT_TRUE(p.ok()) << p.status();
  CheckRows(model, x, opt, a, *p);
  const std::set<int> ts(p->samples_per_row.begin(), p->samples_per_row.end());
  EXPECT_GT(ts.size(), 1u) << "rows should need different T";
  EXPECT_EQ(p->prediction.samples, *ts.rbegin());
  int64_t sum = 0;
  for (int t : p->samples_per_row) sum += t;
  EXPECT_EQ(p->row_passes, sum);
  // A relative target r is met by 1 / r^2 + 1 passes at the most.
  EXPECT_LE(*ts.rbegin(), 2 * (1 / (0.02 * 0.02) + 1));
}

TEST(AdaptiveTest, AbsoluteTargetWithoutNoise) {
  const Model model = Load("concrete");
  const RowMajorMatrixXf x = InputsFor(model, 5, 6);
  PredictOptions opt;
  opt.seed = 3;
  opt.include_noise = false;
  opt.return_samples = true;
  AdaptiveOptions a;
  a.target_abs = 0.1;  // MPa
  a.min_samples = 16;
  a.max_samples = 4096;
  Engine engine({.threads = 1});
  auto p = PredictAdaptive(engine, model, View(x), opt, a);
  ASSERT_TRUE(p.ok()) << p.status();
  CheckRows(model, x, opt, a, *p);
}

TEST(AdaptiveTest, ClassificationProbabilitiesStopAtTheirTarget) {
  const Model model = Load("digits");
  const RowMajorMatrixXf x = InputsFor(model, 6, 7);
  PredictOptions opt;
  opt.seed = 23;
  opt.return_samples = true;
  AdaptiveOptions a;
  a.target_abs = 0.004;  // on every class probability
  a.min_samples = 32;
  a.max_samples = 8192;
  Engine engine({.threads = 2});
  auto p = PredictAdaptive(engine, model, View(x), opt, a);
  ASSERT_TRUE(p.ok()) << p.status();
  CheckRows(model, x, opt, a, *p);
  // And a relative target, against sqrt(p (1 - p)).
  a.target_abs = 0;
  a.target_rel = 0.05;
  auto q = PredictAdaptive(engine, model, View(x), opt, a);
  ASSERT_TRUE(q.ok()) << q.status();
  CheckRows(model, x, opt, a, *q);
}

TEST(AdaptiveTest, DrawsAreThoseOfTheFixedRequest) {
  const Model model = Load("concrete");
  const RowMajorMatrixXf x = InputsFor(model, 4, 8);
  PredictOptions opt;
  opt.seed = 29;
  opt.return_samples = true;
  opt.predictive_draws = true;
  AdaptiveOptions a;
  a.target_rel = 0.05;
  a.min_samples = 20;
  Engine engine({.threads = 2});
  auto p = PredictAdaptive(engine, model, View(x), opt, a);
  ASSERT_TRUE(p.ok()) << p.status();
  for (int r = 0; r < 4; ++r) {
    PredictOptions fixed = opt;
    fixed.samples = p->samples_per_row[r];
    auto one = engine.Predict(model, View(x), fixed);
    ASSERT_TRUE(one.ok());
    ExpectRowEquals(*p, *one, r);
  }
}

TEST(AdaptiveTest, HitsTheCapAndIsTheSameOnAnyThreads) {
  const Model model = Load("digits");
  const RowMajorMatrixXf x = InputsFor(model, 5, 9);
  PredictOptions opt;
  opt.seed = 31;
  AdaptiveOptions a;
  a.target_abs = 1e-9;
  a.min_samples = 10;
  a.max_samples = 1000;
  Engine one_thread({.threads = 1}), two({.threads = 2});
  auto p1 = PredictAdaptive(one_thread, model, View(x), opt, a);
  auto p2 = PredictAdaptive(two, model, View(x), opt, a);
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_THAT(p2->samples_per_row, ::testing::Each(1000));
  EXPECT_THAT(p2->target_met, ::testing::Each(false));
  EXPECT_EQ(p1->samples_per_row, p2->samples_per_row);
  EXPECT_EQ(p1->prediction.mean, p2->prediction.mean);
  EXPECT_EQ(p1->prediction.mutual_information,
            p2->prediction.mutual_information);
  EXPECT_EQ(p1->standard_error, p2->standard_error);
  // Rounds of 10, 10, 20, 40, ..., and the remainder to the cap.
  EXPECT_EQ(p2->rounds, 8);  // 10 20 40 80 160 320 640 1000
}

TEST(AdaptiveTest, RunningEstimatesAndStoppingThroughThem) {
  const Model model = Load("concrete");
  const RowMajorMatrixXf x = InputsFor(model, 3, 10);
  PredictOptions opt;
  opt.seed = 37;
  AdaptiveOptions a;  // no target: every row to max_samples in rounds
  a.min_samples = 100;
  a.max_samples = 1000;
  Engine engine({.threads = 2});
  std::vector<int> seen;
  testing::Notification finished;
  absl::StatusOr<AdaptivePrediction> final_answer;
  PredictAdaptiveAsync(
      engine, std::shared_ptr<const Model>(&model, [](const Model*) {}),
      View(x), opt, a,
      [&](absl::StatusOr<AdaptivePrediction> p) {
        final_answer = std::move(p);
        finished.Notify();
      },
      [&](const AdaptivePrediction& so_far) {
        EXPECT_FALSE(so_far.finished);
        seen.push_back(so_far.prediction.samples);
        return true;
      });
  finished.WaitForNotification();
  ASSERT_TRUE(final_answer.ok());
  EXPECT_TRUE(final_answer->finished);
  EXPECT_THAT(seen, ::testing::ElementsAre(100, 200, 400, 800));
  // The last answer is the fixed request of T = 1000, bit for bit.
  PredictOptions fixed = opt;
  fixed.samples = 1000;
  auto one = engine.Predict(model, View(x), fixed);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(final_answer->prediction.mean, one->mean);
  EXPECT_EQ(final_answer->prediction.variance, one->variance);

  // Returning false stops it: CANCELLED, after two rounds.
  testing::Notification stopped;
  absl::Status status;
  int rounds = 0;
  PredictAdaptiveAsync(
      engine, std::shared_ptr<const Model>(&model, [](const Model*) {}),
      View(x), opt, a,
      [&](absl::StatusOr<AdaptivePrediction> p) {
        status = p.status();
        stopped.Notify();
      },
      [&](const AdaptivePrediction&) { return ++rounds < 2; });
  stopped.WaitForNotification();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(rounds, 2);
}

TEST(AdaptiveTest, CancellationAndDeadlineStopTheRounds) {
  const Model model = Load("concrete");
  const RowMajorMatrixXf x = InputsFor(model, 2, 11);
  AdaptiveOptions a;
  a.target_abs = 1e-9;
  a.max_samples = 1 << 22;
  Engine engine({.threads = 2});
  PredictOptions opt;
  std::atomic<bool> stop{false};
  opt.should_stop = [&stop] { return stop.load(); };
  std::atomic<int> rounds{0};
  testing::Notification finished;
  absl::Status status;
  PredictAdaptiveAsync(
      engine, std::shared_ptr<const Model>(&model, [](const Model*) {}),
      View(x), opt, a,
      [&](absl::StatusOr<AdaptivePrediction> p) {
        status = p.status();
        finished.Notify();
      },
      [&](const AdaptivePrediction&) {
        if (++rounds == 3) stop = true;
        return true;
      });
  finished.WaitForNotification();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);

  PredictOptions late;
  late.deadline = absl::Now() + absl::Milliseconds(50);
  const absl::Time start = absl::Now();
  auto p = PredictAdaptive(engine, model, View(x), late, a);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(AdaptiveTest, RefusesNonsense) {
  const Model model = Load("concrete");
  const RowMajorMatrixXf x = InputsFor(model, 1, 12);
  Engine engine({.threads = 1});
  auto refused = [&](const PredictOptions& opt, const AdaptiveOptions& a,
                     const char* says) {
    auto p = PredictAdaptive(engine, model, View(x), opt, a);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << says;
    EXPECT_THAT(std::string(p.status().message()), ::testing::HasSubstr(says));
  };
  const PredictOptions opt;
  refused(opt, {-1, 0, 100, 1000}, "finite and >= 0");
  refused(opt, {0, NAN, 100, 1000}, "finite and >= 0");
  refused(opt, {INFINITY, 0, 100, 1000}, "finite and >= 0");
  refused(opt, {0, 0.1, 200, 100}, "min_samples <= max_samples");
  refused(opt, {0, 0.1, 1, 100}, "min_samples <= max_samples");
  PredictOptions det;
  det.mode = PredictMode::kDeterministic;
  refused(det, {0, 0.1, 100, 1000}, "Monte-Carlo");
  PredictOptions intervals;
  intervals.interval_levels = {0.9};
  refused(intervals, {0, 0.1, 100, 1000}, "intervals");
}

}  // namespace
}  // namespace mcdrop
