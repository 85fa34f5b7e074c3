// Copyright 2026 The mcdrop Authors.

#include "core/dense_kernel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace mcdrop {
namespace {

Eigen::MatrixXf RandomMatrix(int rows, int cols, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  return Eigen::MatrixXf::NullaryExpr(rows, cols, [&] { return normal(rng); });
}

// y = W x in double from the values the kernel is meant to multiply (rounded
// to bf16 first in bf16), and sum |w| |x|, the scale of the f32 accumulation
// error.
void Reference(const Eigen::MatrixXf& w, const float* x, Precision p,
               std::vector<double>* y, std::vector<double>* scale) {
  auto value = [p](float v) {
    return p == Precision::kBf16 ? RoundToBf16(v) : v;
  };
  y->assign(w.rows(), 0.0);
  scale->assign(w.rows(), 0.0);
  for (int o = 0; o < w.rows(); ++o) {
    for (int i = 0; i < w.cols(); ++i) {
      const double a = value(w(o, i)), b = value(x[i]);
      (*y)[o] += a * b;
      (*scale)[o] += std::abs(a * b);
    }
  }
}

class DenseKernelTest : public ::testing::TestWithParam<Precision> {};

// Each column equals the reference to f32 accumulation error (bf16: of the
// bf16-rounded operands, so the only error is the f32 sums'), and is the same
// bits whatever the number of columns in the call: the seed contract.
TEST_P(DenseKernelTest, ColumnsMatchTheReferenceWhateverTheColumnCount) {
  const Precision p = GetParam();
  for (auto [in, out] : std::vector<std::pair<int, int>>{
           {13, 50}, {50, 1}, {784, 1024}, {1024, 10}, {33, 29}}) {
    const Eigen::MatrixXf w = RandomMatrix(out, in, in * out);
    auto kernel = DenseKernel::Create(w, p);
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    EXPECT_EQ((*kernel)->precision(), p);
    const Eigen::MatrixXf x = RandomMatrix(in, 256, in);
    std::vector<float> y256(static_cast<size_t>(out) * 256);
    (*kernel)->Apply(x.data(), 256, y256.data());
    std::vector<double> ref, scale;
    for (int c : {0, 7, 100, 255}) {
      Reference(w, x.col(c).data(), p, &ref, &scale);
      for (int o = 0; o < out; ++o) {
        EXPECT_NEAR(y256[c * out + o], ref[o], 1e-5 * scale[o] + 1e-30)
            << in << "->" << out << " column " << c << " output " << o;
      }
    }
    for (int cols : {8, 16, 64, 136}) {
      std::vector<float> y(static_cast<size_t>(out) * cols);
      (*kernel)->Apply(x.data(), cols, y.data());
      EXPECT_EQ(std::memcmp(y.data(), y256.data(), y.size() * sizeof(float)), 0)
          << in << "->" << out << " with " << cols << " columns";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, DenseKernelTest,
                         ::testing::Values(Precision::kF32, Precision::kBf16),
                         [](const auto& info) {
                           return std::string(PrecisionName(info.param));
                         });

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(ToBf16Bits(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to even (1).
  EXPECT_EQ(RoundToBf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(RoundToBf16(1.0f + 3 * std::ldexp(1.0f, -8)),
            1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(RoundToBf16(std::nanf(""))));
  EXPECT_EQ(RoundToBf16(-2.5f), -2.5f);
  EXPECT_EQ(ParsePrecision("bf16").value(), Precision::kBf16);
  EXPECT_FALSE(ParsePrecision("fp8").ok());
}

}  // namespace
}  // namespace mcdrop
