// Copyright 2026 The mcdrop Authors.
//
// Builders of format v2 layer lists for tests and fuzzers: random layers of
// each kind and ConvSpec, a small model with every layer kind.

#ifndef MCDROP_TESTS_TESTING_LAYER_SPECS_H_
#define MCDROP_TESTS_TESTING_LAYER_SPECS_H_

#include <cmath>
#include <random>

#include "core/layers.h"
#include "core/model.h"

namespace mcdrop::testing {

inline Eigen::MatrixXf RandomMatrix(int rows, int cols, float scale,
                                    std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  return Eigen::MatrixXf::NullaryExpr(rows, cols, [&] { return normal(rng); });
}

inline Eigen::VectorXf RandomVector(int n, float lo, float hi,
                                    std::mt19937& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  return Eigen::VectorXf::NullaryExpr(n, [&] { return u(rng); });
}

inline LayerDef Conv(int in_c, int out_c, int k, int stride, int pad,
                     int groups, int dilation, std::mt19937& rng) {
  LayerDef l;
  l.kind = LayerKind::kConv2d;
  l.out = out_c;
  l.kernel = {k, k};
  l.stride = {stride, stride};
  l.padding = {pad, pad};
  l.dilation = {dilation, dilation};
  l.groups = groups;
  const int fan_in = in_c / groups * k * k;
  l.weight = RandomMatrix(out_c, fan_in, 1.0f / std::sqrt(fan_in), rng);
  l.bias = RandomVector(out_c, -0.1f, 0.1f, rng);
  return l;
}

inline LayerDef Dense(int in, int out, std::mt19937& rng) {
  LayerDef l;
  l.kind = LayerKind::kDense;
  l.out = out;
  l.weight = RandomMatrix(out, in, 1.0f / std::sqrt(in), rng);
  l.bias = RandomVector(out, -0.1f, 0.1f, rng);
  return l;
}

inline LayerDef Simple(LayerKind kind, float rate = 0.0f) {
  LayerDef l;
  l.kind = kind;
  l.rate = rate;
  return l;
}

inline LayerDef Act(Activation a, float slope = 0.01f) {
  LayerDef l;
  l.kind = LayerKind::kActivation;
  l.activation = a;
  l.negative_slope = slope;
  return l;
}

inline LayerDef Pool(LayerKind kind, int k, int stride, int pad) {
  LayerDef l;
  l.kind = kind;
  l.kernel = {k, k};
  l.stride = {stride, stride};
  l.padding = {pad, pad};
  return l;
}

inline LayerDef BatchNorm(int c, std::mt19937& rng) {
  LayerDef l;
  l.kind = LayerKind::kBatchNorm;
  l.gamma = RandomVector(c, 0.5f, 1.5f, rng);
  l.bias = RandomVector(c, -0.2f, 0.2f, rng);
  l.mean = RandomVector(c, -0.3f, 0.3f, rng);
  l.var = RandomVector(c, 0.5f, 2.0f, rng);
  l.eps = 1e-5;
  return l;
}

// Every layer kind: conv (padding, groups, dilation, stride), batch_norm
// folded (after conv) and not folded (after an activation), dropout2d,
// pooling of both kinds with padding, element-wise dropout on a spatial
// tensor and after flatten, leaky_relu, gelu, tanh.
inline ModelSpec ConvSpec(Task task, uint32_t seed) {
  std::mt19937 rng(seed);
  ModelSpec spec;
  spec.task = task;
  spec.tau = 4.0;
  spec.input_shape = {2, 9, 8};
  std::vector<LayerDef>& g = spec.graph;
  g.push_back(Conv(2, 4, 3, 1, 1, 1, 1, rng));  // 4 x 9 x 8
  g.push_back(BatchNorm(4, rng));               // folded
  g.push_back(Act(Activation::kRelu));
  g.push_back(Simple(LayerKind::kDropout2d, 0.3f));
  g.push_back(Pool(LayerKind::kMaxPool2d, 2, 2, 1));  // 4 x 5 x 5
  g.push_back(Conv(4, 6, 3, 1, 1, 2, 2, rng));        // 6 x 3 x 3
  g.push_back(Act(Activation::kLeakyRelu, 0.1f));
  g.push_back(BatchNorm(6, rng));  // not folded
  g.push_back(Simple(LayerKind::kDropout, 0.2f));
  g.push_back(Pool(LayerKind::kAvgPool2d, 2, 1, 1));  // 6 x 4 x 4
  g.push_back(Simple(LayerKind::kFlatten));           // 96
  g.push_back(Simple(LayerKind::kDropout, 0.25f));
  g.push_back(Dense(96, 12, rng));
  g.push_back(Act(Activation::kGelu));
  g.push_back(Simple(LayerKind::kDropout, 0.1f));
  g.push_back(Dense(12, 3, rng));
  spec.input_mean = RandomVector(2, -0.5f, 0.5f, rng);  // per channel
  spec.input_std = RandomVector(2, 0.5f, 2.0f, rng);
  return spec;
}

}  // namespace mcdrop::testing

#endif  // MCDROP_TESTS_TESTING_LAYER_SPECS_H_
