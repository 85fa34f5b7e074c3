// Copyright 2026 The mcdrop Authors.

#include "core/pass_stats.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/engine.h"
#include "tests/testing/models.h"

namespace mcdrop {
namespace {

using ::mcdrop::testing::MustCreate;
using ::mcdrop::testing::RandomInputs;
using ::mcdrop::testing::RandomSpec;
using ::mcdrop::testing::View;
using ::testing::HasSubstr;

constexpr int64_t L = kLeafPasses;

// Bit-for-bit equality of two double vectors, naming the first difference.
void ExpectSameBits(const std::vector<double>& got,
                    const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(double)), 0)
        << what << "[" << i << "]: " << got[i] << " vs " << want[i];
  }
}

// The passes [a, b) of a request of `seed`, as one range of it.
RunningStats Range(Engine& engine, const Model& model,
                   const RowMajorMatrixXf& x, uint64_t seed, int64_t a,
                   int64_t b) {
  PredictOptions opt;
  opt.seed = seed;
  opt.first_sample = static_cast<uint32_t>(a);
  opt.samples = static_cast<int>(b - a);
  opt.keep_stats = true;
  auto p = engine.Predict(model, View(x), opt);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p->stats : RunningStats();
}

// A request of T passes equals, bit for bit, its ranges merged: any split at
// multiples of the leaf, uneven, with the last range ending inside a leaf.
void ExpectRangesMergeExactly(const Model& model, int T,
                              const std::vector<int64_t>& cuts) {
  const RowMajorMatrixXf x = RandomInputs(3, model.input_size(), 5);
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.seed = 99;
  opt.samples = T;
  opt.keep_stats = true;
  opt.samples_per_tile = 100;  // tiles that straddle leaves
  auto whole = engine.Predict(model, View(x), opt);
  ASSERT_TRUE(whole.ok()) << whole.status();

  std::vector<RunningStats> parts;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    parts.push_back(Range(engine, model, x, 99, cuts[i], cuts[i + 1]));
    const RunningStats& part = parts.back();
    // The engine's blocks are the run's canonical decomposition.
    const std::vector<PassBlock> canon =
        CanonicalBlocks(cuts[i], cuts[i + 1] - cuts[i]);
    ASSERT_EQ(part.blocks.size(), canon.size());
    for (size_t k = 0; k < canon.size(); ++k) {
      EXPECT_EQ(part.blocks[k].level, canon[k].level);
      EXPECT_EQ(part.blocks[k].index, canon[k].index);
      EXPECT_EQ(part.blocks[k].passes, canon[k].passes);
    }
  }
  auto merged = MergeRuns(parts, model.task(), T);
  ASSERT_TRUE(merged.ok()) << merged.status();
  const double noise =
      model.task() == Task::kRegression ? 1.0 / model.tau() : 0.0;
  const PassFigures f = Figures(*merged, model.task(), noise);
  EXPECT_EQ(f.passes, T);
  ExpectSameBits(f.mean, whole->mean, "mean");
  ExpectSameBits(f.model_variance, whole->model_variance, "model variance");
  if (model.task() == Task::kRegression) {
    ExpectSameBits(f.variance, whole->variance, "variance");
  } else {
    ExpectSameBits(f.entropy, whole->entropy, "entropy");
    ExpectSameBits(f.mutual_information, whole->mutual_information, "MI");
    ExpectSameBits(f.variation_ratio, whole->variation_ratio, "VR");
    EXPECT_EQ(f.predicted_class, whole->predicted_class);
    EXPECT_EQ(f.votes, whole->votes);
  }
}

TEST(PassStatsTest, RegressionRangesMergeToTheBitsOfOneRequest) {
  const Model model = MustCreate(RandomSpec(
      {6, 24, 2}, {0.2f, 0.3f}, Task::kRegression, Activation::kRelu, 3));
  ExpectRangesMergeExactly(model, 3000, {0, 3000});
  ExpectRangesMergeExactly(model, 3000, {0, 256, 2048, 3000});
  ExpectRangesMergeExactly(model, 3000, {0, 1280, 1536, 2816, 3000});
  ExpectRangesMergeExactly(model, 100, {0, 100});
}

TEST(PassStatsTest, ClassificationRangesMergeToTheBitsOfOneRequest) {
  const Model model = MustCreate(RandomSpec(
      {6, 20, 4}, {0.25f, 0.4f}, Task::kClassification, Activation::kTanh, 4));
  ExpectRangesMergeExactly(model, 2600, {0, 512, 768, 2600});
  ExpectRangesMergeExactly(model, 1024, {0, 768, 1024});
}

// Without dropout every pass is the same: the statistics kept for a later
// round are well formed, and resuming them continues the exact figures.
TEST(PassStatsTest, ModelsWithoutDropoutKeepWellFormedStatistics) {
  for (Task task : {Task::kClassification, Task::kRegression}) {
    const Model model = MustCreate(
        RandomSpec({6, 20, 4}, {0.0f, 0.0f}, task, Activation::kTanh, 8));
    const RowMajorMatrixXf x = RandomInputs(2, 6, 5);
    Engine engine({.threads = 1});
    PredictOptions opt;
    opt.samples = 700;
    opt.keep_stats = true;
    auto first = engine.Predict(model, View(x), opt);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_TRUE(CheckRun(*first->stats, task, 2, model.output_size()).ok());
    opt.first_sample = 700;
    opt.samples = 300;
    opt.resume = first->stats;
    auto more = engine.Predict(model, View(x), opt);
    ASSERT_TRUE(more.ok()) << more.status();
    EXPECT_EQ(more->samples, 1000);
    EXPECT_EQ(more->mean, first->mean);
    if (task == Task::kClassification) {
      EXPECT_EQ(more->mutual_information, std::vector<double>(2, 0.0));
    }
  }
}

TEST(PassStatsTest, CanonicalBlocksAreTheMaximalAlignedBlocks) {
  // Leaves 3 .. 9 and a leaf filling: 3 | 4-7 | 8-9 | 10 (filling).
  std::vector<PassBlock> b = CanonicalBlocks(3 * L, 7 * L + 5);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(std::vector<int>({b[0].level, b[1].level, b[2].level, b[3].level}),
            std::vector<int>({0, 2, 1, 0}));
  EXPECT_EQ(b[1].index, 1);
  EXPECT_EQ(b[2].index, 4);
  EXPECT_EQ(b[3].index, 10);
  EXPECT_EQ(b[3].passes, 5);
  // From pass 0, a whole number of leaves: one block per set bit.
  EXPECT_EQ(CanonicalBlocks(0, 6 * L).size(), 2u);
  // A run that starts inside a leaf.
  b = CanonicalBlocks(10, 2 * L - 10);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].level, 1);
  EXPECT_EQ(b[0].passes, 2 * L - 10);
}

// The fold of a run's blocks is within a few ulps of the exact mean and
// variance (long double, two passes) of the values it was made from.
TEST(PassStatsTest, MergedMomentsAreAccurate) {
  std::vector<double> v(5000);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = 1e6 + std::sin(0.37 * static_cast<double>(i)) * 3.0;
  }
  std::vector<PassBlock> blocks;
  PassBlock leaf;
  leaf.mean = {0.0};
  leaf.m2 = {0.0};
  for (size_t i = 0; i < v.size(); ++i) {
    const double n = static_cast<double>(++leaf.passes);
    const double delta = v[i] - leaf.mean[0];
    leaf.mean[0] += delta / n;
    leaf.m2[0] += delta * (v[i] - leaf.mean[0]);
    if ((i + 1) % L == 0 || i + 1 == v.size()) {
      leaf.index = static_cast<int64_t>(i) / L;
      PushBlock(leaf, &blocks);
      leaf = PassBlock();
      leaf.mean = {0.0};
      leaf.m2 = {0.0};
    }
  }
  const PassBlock all = Total(blocks);
  long double mean = 0, m2 = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  for (double x : v) m2 += (x - mean) * (x - mean);
  EXPECT_EQ(all.passes, 5000);
  EXPECT_NEAR(all.mean[0], static_cast<double>(mean), 1e-15 * 1e6 * 4);
  EXPECT_NEAR(all.m2[0] / static_cast<double>(m2), 1.0, 1e-9);
}

RunningStats Part(int64_t first, int64_t passes, int rows = 1) {
  RunningStats s;
  s.first_pass = first;
  s.passes = passes;
  s.rows = rows;
  s.outputs = 1;
  s.blocks = CanonicalBlocks(first, passes);
  for (PassBlock& b : s.blocks) {
    b.mean.assign(rows, 1.0);
    b.m2.assign(rows, 0.0);
  }
  return s;
}

TEST(PassStatsTest, MergeRunsRefusesWhatDoesNotFit) {
  const Task kR = Task::kRegression;
  EXPECT_TRUE(MergeRuns({Part(0, 512), Part(512, 100)}, kR, 612).ok());
  auto status = [&](std::vector<RunningStats> parts, int64_t t) {
    return std::string(MergeRuns(parts, kR, t).status().message());
  };
  EXPECT_THAT(status({}, 10), HasSubstr("no parts"));
  EXPECT_THAT(status({Part(0, 256), Part(512, 100)}, 612),
              HasSubstr("begins at 256"));  // a gap
  EXPECT_THAT(status({Part(0, 300), Part(300, 100)}, 400),
              HasSubstr("inside a leaf"));
  EXPECT_THAT(status({Part(0, 512)}, 600), HasSubstr("not at the request's"));
  EXPECT_THAT(status({Part(0, 512), Part(512, 100, 2)}, 612),
              HasSubstr("rows"));
  RunningStats bad = Part(0, 1024);
  bad.blocks[0].level = 1;  // not the run's decomposition
  EXPECT_THAT(status({bad}, 1024), HasSubstr("block 0"));
  bad = Part(0, 1024);
  bad.blocks[0].m2.clear();
  EXPECT_THAT(status({bad}, 1024), HasSubstr("does not hold"));
  bad = Part(0, 1024);
  bad.blocks[0].passes = 1 << 20;
  EXPECT_FALSE(MergeRuns({bad}, kR, 1024).ok());
  bad = Part(0, 1024);
  bad.votes = {1024};
  EXPECT_THAT(status({bad}, 1024), HasSubstr("votes"));
  // Classification: votes that do not add up.
  RunningStats c;
  c.passes = 10;
  c.rows = 1;
  c.outputs = 2;
  c.blocks = CanonicalBlocks(0, 10);
  c.blocks[0].sum_p = {5, 5};
  c.blocks[0].sum_p2 = {3, 3};
  c.blocks[0].sum_entropy = {1};
  c.votes = {4, 5};
  EXPECT_THAT(
      std::string(MergeRuns({c}, Task::kClassification, 10).status().message()),
      HasSubstr("votes do not add up"));
  c.votes = {4, 6};
  EXPECT_TRUE(MergeRuns({c}, Task::kClassification, 10).ok());
}

TEST(PassStatsTest, SelectRowsKeepsThoseRowsInOrder) {
  RunningStats s = Part(0, 300, 3);
  s.blocks[0].mean = {1, 2, 3};
  const RunningStats sub = SelectRows(s, {2, 0});
  EXPECT_EQ(sub.rows, 2);
  EXPECT_EQ(sub.blocks[0].mean, std::vector<double>({3, 1}));
  EXPECT_TRUE(CheckRun(sub, Task::kRegression, 2, 1).ok());
}

}  // namespace
}  // namespace mcdrop
