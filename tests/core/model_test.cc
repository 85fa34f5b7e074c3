// Copyright 2026 The mcdrop Authors.

#include "core/model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "core/safetensors.h"
#include "tests/testing/models.h"

namespace mcdrop {
namespace {

using ::mcdrop::testing::RandomSpec;
using ::testing::HasSubstr;

// A valid 3 -> 4 -> 2 regression model as named tensors and metadata, which
// each malformed case then breaks in one way.
struct Parts {
  std::vector<TensorToWrite> tensors = {
      {"layers.0.weight", {4, 3}, std::vector<float>(12, 0.5f)},
      {"layers.0.bias", {4}, std::vector<float>(4, 0.1f)},
      {"layers.1.weight", {2, 4}, std::vector<float>(8, -0.25f)},
      {"layers.1.bias", {2}, std::vector<float>(2, 0.0f)},
      {"input_mean", {3}, {0, 1, 2}},
      {"input_std", {3}, {1, 2, 3}},
      {"output_mean", {2}, {5, 6}},
      {"output_std", {2}, {2, 2}},
  };
  std::map<std::string, std::string> meta = {
      {"format", "mcdrop.v1"},   {"task", "regression"}, {"activation", "relu"},
      {"dropout", "[0.1, 0.2]"}, {"tau", "2.5"},         {"name", "tiny"}};
  TensorToWrite& Tensor(const std::string& name) {
    for (auto& t : tensors) {
      if (t.name == name) return t;
    }
    throw std::runtime_error(name);
  }
  void Erase(const std::string& name) {
    tensors.erase(
        std::remove_if(tensors.begin(), tensors.end(),
                       [&](const TensorToWrite& t) { return t.name == name; }),
        tensors.end());
  }
  absl::StatusOr<Model> Load() const {
    auto bytes = SerializeSafetensors(tensors, meta);
    if (!bytes.ok()) return bytes.status();
    return Model::FromBytes(*bytes);
  }
};

TEST(ModelTest, LoadsAValidFile) {
  auto model = Parts().Load();
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->task(), Task::kRegression);
  EXPECT_EQ(model->input_size(), 3);
  EXPECT_EQ(model->output_size(), 2);
  EXPECT_EQ(model->widths(), (std::vector<int>{3, 4, 2}));
  EXPECT_FLOAT_EQ(model->layers()[1].drop_rate, 0.2f);
  EXPECT_DOUBLE_EQ(model->tau(), 2.5);
  EXPECT_EQ(model->spec().name, "tiny");
  EXPECT_EQ(model->first_stochastic_layer(), 0);
  EXPECT_EQ(model->MultiplyAdds(), 12 + 8);
}

TEST(ModelTest, WeightsAreReadInPyTorchLayout) {
  Parts p;
  p.Tensor("layers.0.weight").values = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  auto model = p.Load();
  ASSERT_TRUE(model.ok()) << model.status();
  // [out, in] row-major: row 1 is (4, 5, 6).
  EXPECT_EQ(model->layers()[0].weight(1, 0), 4.0f);
  EXPECT_EQ(model->layers()[0].weight(1, 2), 6.0f);
  EXPECT_EQ(model->layers()[0].weight(3, 1), 11.0f);
}

TEST(ModelTest, SingleDropRateAppliesToEveryLayer) {
  Parts p;
  p.meta["dropout"] = "0.05";
  auto model = p.Load();
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FLOAT_EQ(model->layers()[0].drop_rate, 0.05f);
  EXPECT_FLOAT_EQ(model->layers()[1].drop_rate, 0.05f);
}

TEST(ModelTest, SaveAndLoadRoundTrip) {
  for (Task task : {Task::kRegression, Task::kClassification}) {
    ModelSpec spec =
        RandomSpec({5, 7, 3}, {0.0f, 0.3f}, task, Activation::kGelu, 3);
    spec.name = "rt";
    spec.tau = 0.1234567890123;
    spec.description = "round trip";
    spec.default_samples = 250;
    spec.target_relative_error = 0.015;
    spec.target_standard_error = 0.25;
    spec.extra_metadata["trained_by"] = "test";
    // The classifier is stored as bf16 (metadata "precision").
    if (task == Task::kClassification) spec.precision = Precision::kBf16;
    auto model = Model::Create(spec);
    ASSERT_TRUE(model.ok()) << model.status();
    const std::string path = ::testing::TempDir() + "/rt.safetensors";
    ASSERT_TRUE(model->Save(path).ok());
    auto loaded = Model::Load(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    std::remove(path.c_str());
    const ModelSpec& a = model->spec();
    const ModelSpec& b = loaded->spec();
    EXPECT_EQ(b.task, a.task);
    EXPECT_EQ(b.activation, a.activation);
    EXPECT_EQ(b.tau, a.tau);
    EXPECT_EQ(b.name, "rt");
    EXPECT_EQ(b.description, "round trip");
    EXPECT_EQ(b.default_samples, 250);
    EXPECT_EQ(b.target_relative_error, 0.015);
    EXPECT_EQ(b.target_standard_error, 0.25);
    EXPECT_EQ(b.precision, a.precision);
    EXPECT_EQ(b.extra_metadata.at("trained_by"), "test");
    EXPECT_EQ(b.extra_metadata.count("precision"), 0u);
    ASSERT_EQ(b.layers.size(), a.layers.size());
    for (size_t i = 0; i < a.layers.size(); ++i) {
      EXPECT_EQ(b.layers[i].weight, a.layers[i].weight);
      EXPECT_EQ(b.layers[i].bias, a.layers[i].bias);
      EXPECT_EQ(b.layers[i].drop_rate, a.layers[i].drop_rate);
    }
    EXPECT_EQ(b.input_mean, a.input_mean);
    EXPECT_EQ(b.input_std, a.input_std);
    EXPECT_EQ(b.output_mean, a.output_mean);
  }
}

struct Case {
  std::string name;
  std::function<void(Parts&)> mutate;
  std::string message;
};

TEST(ModelTest, RejectsEachClassOfMalformedModel) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {"missing format", [](Parts& p) { p.meta.erase("format"); },
       "metadata \"format\": missing"},
      {"wrong format", [](Parts& p) { p.meta["format"] = "other.v9"; },
       "\"other.v9\""},
      {"missing task", [](Parts& p) { p.meta.erase("task"); },
       "metadata \"task\": missing"},
      {"unknown task", [](Parts& p) { p.meta["task"] = "ranking"; },
       "unknown task \"ranking\""},
      {"missing activation", [](Parts& p) { p.meta.erase("activation"); },
       "\"activation\": missing"},
      {"unknown activation", [](Parts& p) { p.meta["activation"] = "swish"; },
       "unknown activation"},
      {"unknown precision", [](Parts& p) { p.meta["precision"] = "fp8"; },
       "metadata \"precision\": unknown precision \"fp8\""},
      {"missing dropout", [](Parts& p) { p.meta.erase("dropout"); },
       "\"dropout\": missing"},
      {"dropout not a list", [](Parts& p) { p.meta["dropout"] = "lots"; },
       "expected a JSON list"},
      {"dropout wrong count", [](Parts& p) { p.meta["dropout"] = "[0.1]"; },
       "1 rates for 2 layers"},
      {"dropout of 1", [](Parts& p) { p.meta["dropout"] = "[0.1, 1.0]"; },
       "outside [0, 1)"},
      {"negative dropout", [](Parts& p) { p.meta["dropout"] = "[-0.1, 0.1]"; },
       "outside [0, 1)"},
      {"missing tau", [](Parts& p) { p.meta.erase("tau"); },
       "\"tau\": missing"},
      {"tau not a number", [](Parts& p) { p.meta["tau"] = "high"; },
       "not a number"},
      {"tau zero", [](Parts& p) { p.meta["tau"] = "0"; }, "tau > 0"},
      {"tau infinite", [](Parts& p) { p.meta["tau"] = "inf"; }, "tau > 0"},
      {"default_samples negative",
       [](Parts& p) { p.meta["default_samples"] = "-3"; }, "default_samples"},
      {"target_relative_error negative",
       [](Parts& p) { p.meta["target_relative_error"] = "-0.1"; },
       "\"target_relative_error\": \"-0.1\" is not a finite number >= 0"},
      {"target_standard_error not a number",
       [](Parts& p) { p.meta["target_standard_error"] = "tight"; },
       "\"target_standard_error\": \"tight\""},
      {"target_standard_error infinite",
       [](Parts& p) { p.meta["target_standard_error"] = "inf"; },
       "target_standard_error"},
      {"missing bias", [](Parts& p) { p.Erase("layers.1.bias"); },
       "missing tensor \"layers.1.bias\""},
      {"missing weight", [](Parts& p) { p.Erase("layers.0.weight"); },
       "missing tensor \"layers.0.weight\""},
      {"no layers",
       [](Parts& p) {
         for (auto n : {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                        "layers.1.bias"})
           p.Erase(n);
       },
       "no layers"},
      {"unknown tensor",
       [](Parts& p) {
         p.tensors.push_back({"layer.0.weight", {1}, {1}});
       },
       "\"layer.0.weight\" is not part of the format"},
      {"leading zero index",
       [](Parts& p) {
         p.tensors.push_back({"layers.01.weight", {1}, {1}});
       },
       "not part of the format"},
      {"weight rank 1",
       [](Parts& p) { p.Tensor("layers.1.weight").shape = {8}; },
       "shape [out, in]"},
      {"bias rank 2",
       [](Parts& p) {
         p.Tensor("layers.1.bias").shape = {1, 2};
       },
       "must have rank 1"},
      {"shapes do not chain",
       [](Parts& p) {
         p.Tensor("layers.1.weight") = {
             "layers.1.weight", {2, 2}, {1, 1, 1, 1}};
       },
       "takes 2 inputs but layer 0 has 4 outputs"},
      {"bias size",
       [](Parts& p) {
         p.Tensor("layers.0.bias") = {"layers.0.bias", {3}, {0, 0, 0}};
       },
       "has 3 values"},
      {"non-finite weight",
       [inf](Parts& p) { p.Tensor("layers.1.weight").values[3] = inf; },
       "\"layers.1.weight\" holds a non-finite value"},
      {"nan bias",
       [](Parts& p) { p.Tensor("layers.0.bias").values[0] = std::nanf(""); },
       "\"layers.0.bias\" holds a non-finite"},
      {"input_std zero", [](Parts& p) { p.Tensor("input_std").values[1] = 0; },
       "\"input_std\" holds a value <= 0"},
      {"input_mean wrong size",
       [](Parts& p) {
         p.Tensor("input_mean") = {"input_mean", {2}, {0, 0}};
       },
       "\"input_mean\" has 2 values, expected 3"},
      {"input_mean without std", [](Parts& p) { p.Erase("input_std"); },
       "given together"},
      {"output_std negative",
       [](Parts& p) { p.Tensor("output_std").values[0] = -1; },
       "\"output_std\" holds a value <= 0"},
      {"classification with output standardisation",
       [](Parts& p) { p.meta["task"] = "classification"; },
       "cannot have output_mean"},
      {"classification with one class",
       [](Parts& p) {
         p.meta["task"] = "classification";
         p.Erase("output_mean");
         p.Erase("output_std");
         p.Tensor("layers.1.weight") = {
             "layers.1.weight", {1, 4}, {1, 1, 1, 1}};
         p.Tensor("layers.1.bias") = {"layers.1.bias", {1}, {0}};
       },
       "at least 2 outputs"},
  };
  for (const Case& c : cases) {
    Parts p;
    c.mutate(p);
    auto model = p.Load();
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_THAT(model.status().message(), HasSubstr(c.message)) << c.name;
  }
}

TEST(ModelTest, LoadNamesThePathInErrors) {
  Parts p;
  p.meta["tau"] = "-1";
  auto bytes = SerializeSafetensors(p.tensors, p.meta);
  const std::string path = ::testing::TempDir() + "/bad.safetensors";
  ASSERT_TRUE(WriteFileAtomically(path, *bytes).ok());
  auto model = Model::Load(path);
  std::remove(path.c_str());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr(path));
  EXPECT_EQ(Model::Load("/no/such/file.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

// Random corruption of a whole model file never crashes the loader.
TEST(ModelTest, SurvivesCorruptedModelFiles) {
  auto bytes = SerializeSafetensors(Parts().tensors, Parts().meta);
  ASSERT_TRUE(bytes.ok());
  uint32_t state = 7;
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string b = *bytes;
    for (int k = 0; k < 4; ++k) {
      state = state * 1664525u + 1013904223u;
      b[(state >> 8) % b.size()] = static_cast<char>(state >> 24);
    }
    accepted += Model::FromBytes(b).ok();
  }
  // Flips that land in weight bytes still give a valid model; most do not.
  EXPECT_LT(accepted, 3000);
}

}  // namespace
}  // namespace mcdrop
