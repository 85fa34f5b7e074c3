// Copyright 2026 The mcdrop Authors.
//
// mcdrop computes what PyTorch computes: models exported from PyTorch by
// client/python/mcdrop/torch_export.py, with PyTorch's own outputs saved as
// fixtures by tests/interop/make_fixtures.py (torch is not needed here).
// Deterministic outputs (dropout off) agree to 1e-5 relative; MC mean and
// variance over many passes agree within Monte-Carlo error.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "core/engine.h"
#include "core/file_util.h"
#include "core/model.h"

namespace mcdrop {
namespace {

const std::string kDir =
    std::string(MCDROP_SOURCE_DIR) + "/tests/data/interop/";

struct Fixture {
  Model model;
  nlohmann::json json;
  RowMajorMatrixXf x;
};

Fixture Load(const std::string& name) {
  auto model = Model::Load(kDir + name + ".safetensors");
  EXPECT_TRUE(model.ok()) << model.status();
  const absl::StatusOr<std::string> text =
      ReadFileToString(kDir + name + ".json");
  EXPECT_TRUE(text.ok()) << text.status();
  // An unreadable fixture fails the test with the parser's exception.
  nlohmann::json j = nlohmann::json::parse(text.value_or(""));
  const auto& in = j["inputs"];
  RowMajorMatrixXf x(in.size(), in[0].size());
  for (size_t r = 0; r < in.size(); ++r) {
    for (size_t c = 0; c < in[r].size(); ++c) x(r, c) = in[r][c].get<float>();
  }
  return {*std::move(model), std::move(j), std::move(x)};
}

void CheckAgainstTorch(const Fixture& f, bool classification) {
  Engine engine({.threads = 2});
  const InputMatrix x(f.x.data(), f.x.rows(), f.x.cols());
  const int B = f.x.rows();
  PredictOptions det;
  det.mode = PredictMode::kDeterministic;
  auto d = engine.Predict(f.model, x, det);
  ASSERT_TRUE(d.ok()) << d.status();
  const int D = d->outputs;
  for (int r = 0; r < B; ++r) {
    for (int k = 0; k < D; ++k) {
      const double want = f.json["deterministic"][r][k].get<double>();
      EXPECT_LE(std::abs(d->Mean(r, k) - want),
                1e-5 * std::max(1.0, std::abs(want)))
          << "deterministic row " << r << " output " << k;
    }
  }
  const int T = 200000;
  const double n_torch = f.json["passes"].get<double>();
  PredictOptions mc;
  mc.samples = T;
  mc.seed = 2024;
  mc.return_samples = true;
  mc.include_noise = false;
  auto p = engine.Predict(f.model, x, mc);
  ASSERT_TRUE(p.ok()) << p.status();
  for (int r = 0; r < B; ++r) {
    for (int k = 0; k < D; ++k) {
      // Moments of our passes give the Monte-Carlo standard errors of both
      // sides (the same distribution if the two agree).
      const double mean = p->Mean(r, k);
      double m2 = 0, m4 = 0;
      for (int t = 0; t < T; ++t) {
        const double e = p->Sample(t, r, k) - mean;
        m2 += e * e / T;
        m4 += e * e * e * e / T;
      }
      const double se_mean = std::sqrt(m2 / T + m2 / n_torch);
      const double se_var =
          std::sqrt((m4 - m2 * m2) / T + (m4 - m2 * m2) / n_torch);
      const double torch_mean = f.json["mc_mean"][r][k].get<double>();
      const double torch_var = f.json["mc_variance"][r][k].get<double>();
      EXPECT_NEAR(mean, torch_mean, 4 * se_mean + 1e-6)
          << "MC mean row " << r << " output " << k;
      const double ours_var =
          classification ? m2 : p->model_variance[r * D + k];
      EXPECT_NEAR(ours_var, torch_var, 4 * se_var + 1e-7)
          << "MC variance row " << r << " output " << k;
    }
  }
}

TEST(TorchParity, Regression) {
  const Fixture f = Load("torch_regression");
  EXPECT_EQ(f.model.task(), Task::kRegression);
  EXPECT_DOUBLE_EQ(f.model.tau(), 4.0);
  EXPECT_EQ(f.model.widths(), (std::vector<int>{5, 32, 32, 2}));
  CheckAgainstTorch(f, false);
}

TEST(TorchParity, ClassifierWithGeluAndNestedSequential) {
  const Fixture f = Load("torch_classifier");
  EXPECT_EQ(f.model.task(), Task::kClassification);
  EXPECT_EQ(f.model.activation(), Activation::kGelu);
  EXPECT_FLOAT_EQ(f.model.layers()[0].drop_rate, 0.0f);
  EXPECT_FLOAT_EQ(f.model.layers()[1].drop_rate, 0.3f);
  CheckAgainstTorch(f, true);
}

// Format v2: a convolutional classifier with every layer kind (see
// tests/interop/make_conv_fixture.py), deterministic outputs, MC moments and
// the distribution of one output's per-pass values against PyTorch's.
TEST(TorchParity, ConvNetWithEveryLayerKind) {
  const Fixture f = Load("torch_convnet");
  EXPECT_TRUE(f.model.has_layer_list());
  EXPECT_EQ(f.model.input_size(), 200);
  CheckAgainstTorch(f, true);

  // Two-sample Kolmogorov-Smirnov test on row 0, output 0: PyTorch's first
  // passes against ours (rejects at level 0.001 when
  // D > 1.95 sqrt((n + m) / (n m))).
  std::vector<double> theirs;
  for (const auto& v : f.json["passes_row0_output0"]) {
    theirs.push_back(v.get<double>());
  }
  Engine engine({.threads = 2});
  PredictOptions mc;
  mc.samples = static_cast<int>(theirs.size());
  mc.seed = 77;
  mc.return_samples = true;
  auto p = engine.Predict(f.model,
                          InputMatrix(f.x.data(), f.x.rows(), f.x.cols()), mc);
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<double> ours;
  for (int t = 0; t < mc.samples; ++t) ours.push_back(p->Sample(t, 0, 0));
  std::sort(ours.begin(), ours.end());
  std::sort(theirs.begin(), theirs.end());
  const double n = ours.size(), m = theirs.size();
  double d = 0;
  size_t i = 0, j = 0;
  while (i < ours.size() && j < theirs.size()) {
    const double v = std::min(ours[i], theirs[j]);
    while (i < ours.size() && ours[i] <= v) ++i;
    while (j < theirs.size() && theirs[j] <= v) ++j;
    d = std::max(d, std::abs(i / n - j / m));
  }
  EXPECT_LT(d, 1.95 * std::sqrt((n + m) / (n * m)));
  EXPECT_GT(ours.back() - ours.front(), 0.01);  // the passes really vary
}

}  // namespace
}  // namespace mcdrop
