// Copyright 2026 The mcdrop Authors.
//
// The kernels pinned to AVX2 (what --max_cpu_isa=avx2 does for a fleet of
// mixed x86-64-v3 machines). A process of its own: the instruction set can be
// limited only before the first kernel is made.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "core/dense_kernel.h"
#include "core/engine.h"
#include "tests/testing/models.h"

namespace mcdrop {
namespace {

using ::mcdrop::testing::RandomInputs;
using ::mcdrop::testing::RandomSpec;
using ::mcdrop::testing::ReferencePass;

TEST(PinnedIsaTest, KernelsAreLimitedToAvx2) {
  EXPECT_EQ(KernelIsa(), "avx2");
  EXPECT_EQ(KernelPath().rfind("Eigen x86-64-v3", 0), 0u) << KernelPath();
  EXPECT_EQ(SetMaxCpuIsa("pentium").code(), absl::StatusCode::kInvalidArgument);
}

TEST(PinnedIsaTest, SameSeedSameBitsAcrossRunsThreadsAndTiles) {
  const Model model =
      *Model::Create(RandomSpec({7, 40, 33, 3}, {0.1f, 0.2f, 0.1f},
                                Task::kRegression, Activation::kRelu, 8));
  const RowMajorMatrixXf x = RandomInputs(4, 7, 2);
  std::vector<float> first;
  for (int threads : {1, 2}) {
    for (int samples_per_tile : {0, 3, 64}) {
      Engine engine({.threads = threads});
      PredictOptions opt;
      opt.samples = 150;
      opt.seed = 77;
      opt.return_samples = true;
      opt.samples_per_tile = samples_per_tile;
      auto p = engine.Predict(model, InputMatrix(x.data(), 4, 7), opt);
      ASSERT_TRUE(p.ok()) << p.status();
      if (first.empty()) {
        first = p->sample_values;
        // And the pinned kernels compute the network: per-sample reference.
        for (int t = 0; t < 150; t += 37) {
          const std::vector<double> ref =
              ReferencePass(model, &x(1, 0), 1, t, 77);
          EXPECT_NEAR(p->Sample(t, 1, 0), ref[0],
                      1e-5 * std::max(1.0, std::abs(ref[0])));
        }
        continue;
      }
      ASSERT_EQ(p->sample_values.size(), first.size());
      EXPECT_EQ(std::memcmp(p->sample_values.data(), first.data(),
                            first.size() * sizeof(float)),
                0)
          << threads << " threads, " << samples_per_tile << " per tile";
    }
  }
}

}  // namespace
}  // namespace mcdrop

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (absl::Status s = mcdrop::SetMaxCpuIsa("avx2"); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
