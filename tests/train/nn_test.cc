// Copyright 2026 The mcdrop Authors.
//
// Finite-difference checks of every backward pass the trainer uses, in double
// precision.

#include "train/nn.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>

namespace mcdrop::nn {
namespace {

using M = Matrix<double>;
using V = Vector<double>;

M Random(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  return M::NullaryExpr(rows, cols, [&] { return normal(rng); });
}

// Central differences of the scalar f at x, entry by entry.
M NumericGradient(const std::function<double(const M&)>& f, M x) {
  const double h = 1e-6;
  M g(x.rows(), x.cols());
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const double v = x(i);
    x(i) = v + h;
    const double up = f(x);
    x(i) = v - h;
    const double down = f(x);
    x(i) = v;
    g(i) = (up - down) / (2 * h);
  }
  return g;
}

void ExpectClose(const M& analytic, const M& numeric, const std::string& what) {
  ASSERT_EQ(analytic.rows(), numeric.rows()) << what;
  ASSERT_EQ(analytic.cols(), numeric.cols()) << what;
  const double scale = std::max(1.0, numeric.cwiseAbs().maxCoeff());
  EXPECT_LT((analytic - numeric).cwiseAbs().maxCoeff() / scale, 1e-6) << what;
}

// A fixed linear read-out r . y turns any layer output y into a scalar loss.
double Readout(const M& y, const M& r) { return y.cwiseProduct(r).sum(); }

TEST(GradientCheck, Dense) {
  const M w = Random(4, 3, 1), x = Random(3, 5, 2), r = Random(4, 5, 3);
  const V b = Random(4, 1, 4);
  M z, dw, dx;
  V db;
  DenseForward(w, b, x, &z);
  DenseBackward(w, x, r, &dw, &db, &dx);  // dL/dz = r for L = r . z
  ExpectClose(dw,
              NumericGradient(
                  [&](const M& w2) {
                    M z2;
                    DenseForward(w2, b, x, &z2);
                    return Readout(z2, r);
                  },
                  w),
              "dW");
  ExpectClose(dx,
              NumericGradient(
                  [&](const M& x2) {
                    M z2;
                    DenseForward(w, b, x2, &z2);
                    return Readout(z2, r);
                  },
                  x),
              "dx");
  ExpectClose(db,
              NumericGradient(
                  [&](const M& b2) {
                    M z2;
                    DenseForward(w, V(b2), x, &z2);
                    return Readout(z2, r);
                  },
                  b),
              "db");
}

class ActivationCheck : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationCheck, Backward) {
  // Keep ReLU inputs away from its kink at 0.
  M z = Random(6, 4, 5);
  for (Eigen::Index i = 0; i < z.size(); ++i) {
    if (std::abs(z(i)) < 0.05) z(i) = 0.3;
  }
  const M r = Random(6, 4, 6);
  auto forward = [&](const M& in) {
    M a = in;
    Activate(GetParam(), a);
    return a;
  };
  const M a = forward(z);
  M dz;
  ActivationBackward<double>(GetParam(), z, a, r, &dz);
  ExpectClose(
      dz,
      NumericGradient([&](const M& z2) { return Readout(forward(z2), r); }, z),
      std::string(ActivationName(GetParam())));
}

INSTANTIATE_TEST_SUITE_P(All, ActivationCheck,
                         ::testing::Values(Activation::kRelu, Activation::kTanh,
                                           Activation::kSigmoid,
                                           Activation::kGelu,
                                           Activation::kIdentity));

TEST(GradientCheck, DropoutWithFixedMask) {
  const double q = 0.7;
  M mask = Random(5, 3, 7);
  for (Eigen::Index i = 0; i < mask.size(); ++i)
    mask(i) = mask(i) > 0 ? 1 / q : 0.0;
  const M x = Random(5, 3, 8), r = Random(5, 3, 9);
  M y, dx;
  DropoutForward(x, mask, &y);
  DropoutBackward(r, mask, &dx);
  ExpectClose(dx,
              NumericGradient(
                  [&](const M& x2) {
                    M y2;
                    DropoutForward(x2, mask, &y2);
                    return Readout(y2, r);
                  },
                  x),
              "dropout");
  // The forward pass is inverted dropout: kept entries scaled by 1/q.
  for (Eigen::Index i = 0; i < x.size(); ++i)
    EXPECT_DOUBLE_EQ(y(i), mask(i) == 0 ? 0.0 : x(i) / q);
}

TEST(GradientCheck, MeanSquaredError) {
  const M pred = Random(2, 6, 10), target = Random(2, 6, 11);
  M d;
  const double loss = MseLoss(pred, target, &d);
  EXPECT_NEAR(loss, (pred - target).squaredNorm() / 12, 1e-12);
  ExpectClose(d,
              NumericGradient(
                  [&](const M& p) {
                    M unused;
                    return MseLoss(p, target, &unused);
                  },
                  pred),
              "mse");
}

TEST(GradientCheck, SoftmaxCrossEntropy) {
  const M logits = Random(4, 5, 12);
  const std::vector<int> labels = {0, 3, 1, 1, 2};
  M d;
  const double loss = SoftmaxCrossEntropy(logits, labels, &d);
  double want = 0;
  for (int c = 0; c < 5; ++c) {
    const double lse = std::log(logits.col(c).array().exp().sum());
    want += (lse - logits(labels[c], c)) / 5;
  }
  EXPECT_NEAR(loss, want, 1e-12);
  ExpectClose(d,
              NumericGradient(
                  [&](const M& l) {
                    M unused;
                    return SoftmaxCrossEntropy(l, labels, &unused);
                  },
                  logits),
              "softmax xent");
  // Stable for huge logits.
  M big = logits * 1e4;
  EXPECT_TRUE(std::isfinite(SoftmaxCrossEntropy(big, labels, &d)));
  EXPECT_TRUE(d.allFinite());
}

}  // namespace
}  // namespace mcdrop::nn
