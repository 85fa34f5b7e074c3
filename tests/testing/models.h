// Copyright 2026 The mcdrop Authors.
//
// Small models and a plain per-sample reference implementation for tests.

#ifndef MCDROP_TESTS_TESTING_MODELS_H_
#define MCDROP_TESTS_TESTING_MODELS_H_

#include <cmath>
#include <random>
#include <vector>

#include "core/engine.h"
#include "core/mask.h"
#include "core/model.h"
#include "gtest/gtest.h"

namespace mcdrop::testing {

// Model::Create, failing the test (with the status) when the spec is refused.
inline Model MustCreate(ModelSpec spec) {
  auto m = Model::Create(std::move(spec));
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// A request's input view of a row-major matrix.
inline InputMatrix View(const RowMajorMatrixXf& x) {
  return InputMatrix(x.data(), x.rows(), x.cols());
}

// A random MLP with the given widths (input first), drop rates one per layer.
inline ModelSpec RandomSpec(const std::vector<int>& widths,
                            const std::vector<float>& drops, Task task,
                            Activation act, uint32_t seed,
                            bool standardise = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ModelSpec spec;
  spec.task = task;
  spec.activation = act;
  spec.tau = 4.0;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    DenseLayer l;
    const float scale = 1.0f / std::sqrt(static_cast<float>(widths[i]));
    l.weight = Eigen::MatrixXf::NullaryExpr(
        widths[i + 1], widths[i], [&] { return normal(rng) * scale; });
    l.bias = Eigen::VectorXf::NullaryExpr(widths[i + 1],
                                          [&] { return 0.1f * normal(rng); });
    l.drop_rate = drops[i];
    spec.layers.push_back(std::move(l));
  }
  if (standardise) {
    spec.input_mean = Eigen::VectorXf::NullaryExpr(widths.front(),
                                                   [&] { return normal(rng); });
    spec.input_std = Eigen::VectorXf::NullaryExpr(
        widths.front(), [&] { return 0.5f + std::abs(normal(rng)); });
    if (task == Task::kRegression) {
      spec.output_mean = Eigen::VectorXf::NullaryExpr(
          widths.back(), [&] { return 3.0f * normal(rng); });
      spec.output_std = Eigen::VectorXf::NullaryExpr(
          widths.back(), [&] { return 0.5f + std::abs(normal(rng)); });
    }
  }
  return spec;
}

inline RowMajorMatrixXf RandomInputs(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  return RowMajorMatrixXf::NullaryExpr(rows, cols, [&] { return normal(rng); });
}

inline float Activate(Activation a, float x, float negative_slope = 0.01f) {
  switch (a) {
    case Activation::kLeakyRelu:
      return x > 0 ? x : x * negative_slope;
    case Activation::kRelu:
      return x > 0 ? x : 0;
    case Activation::kTanh:
      return std::tanh(x);
    case Activation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case Activation::kGelu:
      return 0.5f * x * (1.0f + std::erf(x / std::sqrt(2.0f)));
    case Activation::kIdentity:
      return x;
  }
  return x;
}

// One stochastic pass for input row `row` with the masks of (seed, row,
// sample), one unit at a time: the plain reference the engine must equal.
// Returns the raw network output (regression: de-standardised; classification:
// logits). `mc` false gives the deterministic pass.
inline std::vector<double> ReferencePass(const Model& model, const float* x,
                                         uint32_t row, uint32_t sample,
                                         uint64_t seed, bool mc = true) {
  const ModelSpec& spec = model.spec();
  std::vector<double> h(x, x + model.input_size());
  if (spec.input_mean.size()) {
    for (size_t i = 0; i < h.size(); ++i)
      h[i] = (h[i] - spec.input_mean[i]) / spec.input_std[i];
  }
  for (int l = 0; l < model.num_layers(); ++l) {
    const DenseLayer& layer = model.layers()[l];
    if (mc && layer.drop_rate > 0) {
      DropoutMask mask(seed, l, layer.drop_rate);
      for (size_t u = 0; u < h.size(); ++u) {
        h[u] = mask.Kept(row, sample, u) ? h[u] / (1.0 - layer.drop_rate) : 0.0;
      }
    }
    std::vector<double> z(layer.weight.rows());
    for (int o = 0; o < layer.weight.rows(); ++o) {
      double acc = layer.bias[o];
      for (int i = 0; i < layer.weight.cols(); ++i)
        acc += layer.weight(o, i) * h[i];
      z[o] = l + 1 < model.num_layers()
                 ? Activate(model.activation(), static_cast<float>(acc))
                 : acc;
    }
    h = std::move(z);
  }
  if (spec.output_mean.size()) {
    for (size_t d = 0; d < h.size(); ++d)
      h[d] = h[d] * spec.output_std[d] + spec.output_mean[d];
  }
  return h;
}

inline std::vector<double> SoftmaxRef(const std::vector<double>& z) {
  double m = z[0];
  for (double v : z) m = std::max(m, v);
  std::vector<double> p(z.size());
  double s = 0;
  for (size_t i = 0; i < z.size(); ++i) s += (p[i] = std::exp(z[i] - m));
  for (double& v : p) v /= s;
  return p;
}

}  // namespace mcdrop::testing

#endif  // MCDROP_TESTS_TESTING_MODELS_H_
