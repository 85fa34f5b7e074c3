// Copyright 2026 The mcdrop Authors.
//
// Metrics without a server: input drift counted per channel for an image
// model standardised per channel.

#include "server/metrics.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/layer_specs.h"
#include "tests/testing/metrics.h"
#include "tests/testing/models.h"

namespace mcdrop::server {
namespace {

TEST(MetricsTest, InputDriftPerChannelForImages) {
  ModelSpec spec = testing::ConvSpec(Task::kClassification, 3);  // [2, 9, 8]
  spec.input_mean = Eigen::VectorXf(2);
  spec.input_mean << 0.0f, 10.0f;
  spec.input_std = Eigen::VectorXf(2);
  spec.input_std << 1.0f, 2.0f;
  ServedModel served{"img", 3, "", absl::Now(),
                     testing::MustCreate(std::move(spec))};
  Engine engine(EngineOptions{.threads = 1});
  auto metrics = Metrics::Create("", &engine);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const ModelMetrics* mm = (*metrics)->ForModel(served);
  // Two images; channel 0 (72 values) is judged by mean 0, std 1, channel 1
  // by mean 10, std 2 (bound 8).
  std::vector<float> x(2 * 144, 0.0f);
  for (int i = 72; i < 144; ++i) x[i] = 10.0f;
  for (int i = 144 + 72; i < 288; ++i) x[i] = 10.0f;
  x[0] = 4.5f;          // out (channel 0)
  x[1] = 3.9f;          // in
  x[2] = -5.0f;         // out
  x[72] = 18.1f;        // out (channel 1: |8.1| > 8)
  x[73] = 4.5f;         // in for channel 1 (|-5.5| <= 8), out were it channel 0
  x[144 + 71] = 4.01f;  // out: the second image's last channel-0 value
  mm->ObserveInputs(served.model, x);
  const std::string text = (*metrics)->Text();
  EXPECT_EQ(testing::Metric(text, "mcdrop_input_values_total",
                            "model=\"img\",version=\"3\""),
            288);
  EXPECT_EQ(testing::Metric(text, "mcdrop_input_values_out_of_range_total",
                            "model=\"img\",version=\"3\""),
            4);
}

}  // namespace
}  // namespace mcdrop::server
