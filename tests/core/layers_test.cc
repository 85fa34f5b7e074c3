// Copyright 2026 The mcdrop Authors.
//
// Format v2 (layer lists): the engine against a plain per-sample reference
// written here in PyTorch's CHW layout, the seed contract across threads and
// tilings, the file round trip, and every class of malformed layer list.

#include "core/layers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/engine.h"
#include "core/mask.h"
#include "core/model.h"
#include "tests/testing/layer_specs.h"
#include "tests/testing/models.h"

namespace mcdrop {
namespace {

using ::mcdrop::testing::Act;
using ::mcdrop::testing::BatchNorm;
using ::mcdrop::testing::Conv;
using ::mcdrop::testing::ConvSpec;
using ::mcdrop::testing::Dense;
using ::mcdrop::testing::MustCreate;
using ::mcdrop::testing::Pool;
using ::mcdrop::testing::RandomInputs;
using ::mcdrop::testing::RandomMatrix;
using ::mcdrop::testing::RandomVector;
using ::mcdrop::testing::Simple;
using ::mcdrop::testing::View;
using ::testing::HasSubstr;

// A CHW tensor of one example.
struct Tensor {
  int c, h, w;
  std::vector<double> v;  // (c * h + y) * w + x
  double& at(int ci, int y, int x) { return v[(ci * h + y) * w + x]; }
  double at(int ci, int y, int x) const { return v[(ci * h + y) * w + x]; }
};

// The element's unit number for the mask generator: its index in the
// engine's channels-last layout (docs/model-format.md).
uint32_t Unit(const Tensor& t, int c, int y, int x) {
  return static_cast<uint32_t>((y * t.w + x) * t.c + c);
}

// One pass of a v2 model on one example, straight from the layer list, in
// PyTorch's layout, double precision. `flat_from` is the CHW shape a
// flattened tensor came from (for the element-wise masks' unit numbers).
std::vector<double> ReferencePassV2(const Model& model, const float* input,
                                    uint32_t row, uint32_t sample,
                                    uint64_t seed) {
  const ModelSpec& spec = model.spec();
  Tensor t{spec.input_shape[0], spec.input_shape[1], spec.input_shape[2], {}};
  t.v.assign(input, input + t.c * t.h * t.w);
  for (int c = 0; c < t.c; ++c)
    for (int y = 0; y < t.h; ++y)
      for (int x = 0; x < t.w; ++x)
        t.at(c, y, x) =
            (t.at(c, y, x) - spec.input_mean[c]) / spec.input_std[c];
  bool flat = false;
  Tensor pre_flatten = t;
  for (size_t i = 0; i < spec.graph.size(); ++i) {
    const LayerDef& l = spec.graph[i];
    switch (l.kind) {
      case LayerKind::kConv2d: {
        const int oh = static_cast<int>(WindowOutput(
            t.h, l.kernel[0], l.stride[0], l.padding[0], l.dilation[0]));
        const int ow = static_cast<int>(WindowOutput(
            t.w, l.kernel[1], l.stride[1], l.padding[1], l.dilation[1]));
        Tensor o{l.out, oh, ow, std::vector<double>(l.out * oh * ow)};
        const int icg = t.c / l.groups, ocg = l.out / l.groups;
        for (int oc = 0; oc < l.out; ++oc) {
          const int g = oc / ocg;
          for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
              double acc = l.bias[oc];
              for (int ic = 0; ic < icg; ++ic)
                for (int ky = 0; ky < l.kernel[0]; ++ky)
                  for (int kx = 0; kx < l.kernel[1]; ++kx) {
                    const int iy =
                        oy * l.stride[0] - l.padding[0] + ky * l.dilation[0];
                    const int ix =
                        ox * l.stride[1] - l.padding[1] + kx * l.dilation[1];
                    if (iy < 0 || iy >= t.h || ix < 0 || ix >= t.w) continue;
                    acc += l.weight(
                               oc, (ic * l.kernel[0] + ky) * l.kernel[1] + kx) *
                           t.at(g * icg + ic, iy, ix);
                  }
              o.at(oc, oy, ox) = acc;
            }
        }
        t = std::move(o);
        break;
      }
      case LayerKind::kMaxPool2d:
      case LayerKind::kAvgPool2d: {
        const bool is_max = l.kind == LayerKind::kMaxPool2d;
        const int oh = static_cast<int>(WindowOutput(
            t.h, l.kernel[0], l.stride[0], l.padding[0], l.dilation[0]));
        const int ow = static_cast<int>(WindowOutput(
            t.w, l.kernel[1], l.stride[1], l.padding[1], l.dilation[1]));
        Tensor o{t.c, oh, ow, std::vector<double>(t.c * oh * ow)};
        for (int c = 0; c < t.c; ++c)
          for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
              double acc = is_max ? -INFINITY : 0.0;
              int count = 0;
              for (int ky = 0; ky < l.kernel[0]; ++ky)
                for (int kx = 0; kx < l.kernel[1]; ++kx) {
                  const int iy = oy * l.stride[0] - l.padding[0] + ky;
                  const int ix = ox * l.stride[1] - l.padding[1] + kx;
                  ++count;  // count_include_pad (PyTorch's default)
                  if (iy < 0 || iy >= t.h || ix < 0 || ix >= t.w) continue;
                  acc = is_max ? std::max(acc, t.at(c, iy, ix))
                               : acc + t.at(c, iy, ix);
                }
              o.at(c, oy, ox) = is_max ? acc : acc / count;
            }
        t = std::move(o);
        break;
      }
      case LayerKind::kFlatten:
        pre_flatten = t;
        flat = true;
        t = Tensor{t.c * t.h * t.w, 1, 1, t.v};
        break;
      case LayerKind::kBatchNorm:
        for (int c = 0; c < t.c; ++c)
          for (int y = 0; y < t.h; ++y)
            for (int x = 0; x < t.w; ++x)
              t.at(c, y, x) = (t.at(c, y, x) - l.mean[c]) /
                                  std::sqrt(double{l.var[c]} + l.eps) *
                                  l.gamma[c] +
                              l.bias[c];
        break;
      case LayerKind::kActivation:
        for (double& v : t.v) {
          v = testing::Activate(l.activation, static_cast<float>(v),
                                l.negative_slope);
        }
        break;
      case LayerKind::kDropout:
      case LayerKind::kDropout2d: {
        DropoutMask mask(seed, static_cast<uint32_t>(i), l.rate);
        const double keep = 1.0 / (1.0 - l.rate);
        for (int c = 0; c < t.c; ++c)
          for (int y = 0; y < t.h; ++y)
            for (int x = 0; x < t.w; ++x) {
              uint32_t unit;
              if (l.kind == LayerKind::kDropout2d) {
                unit = static_cast<uint32_t>(c);
              } else if (flat) {
                // c indexes the CHW-flattened tensor.
                const Tensor& p = pre_flatten;
                const int pc = c / (p.h * p.w), py = c / p.w % p.h,
                          px = c % p.w;
                unit = Unit(p, pc, py, px);
              } else {
                unit = Unit(t, c, y, x);
              }
              t.at(c, y, x) *= mask.Kept(row, sample, unit) ? keep : 0.0;
            }
        break;
      }
      case LayerKind::kDense: {
        Tensor o{l.out, 1, 1, std::vector<double>(l.out)};
        for (int r = 0; r < l.out; ++r) {
          double acc = l.bias[r];
          for (int k = 0; k < static_cast<int>(t.v.size()); ++k)
            acc += l.weight(r, k) * t.v[k];
          o.v[r] = acc;
        }
        t = std::move(o);
        flat = false;
        break;
      }
    }
  }
  return t.v;
}

// Every returned pass of `pred` (made with `opt` on the rows of `x`) equals
// the reference pass (softmax for classifiers) to `rel` x max(1, |want|).
void ExpectEqualsReference(const Model& model, const RowMajorMatrixXf& x,
                           const PredictOptions& opt, const Prediction& pred,
                           double rel) {
  for (int r = 0; r < x.rows(); ++r) {
    for (int s = 0; s < opt.samples; ++s) {
      std::vector<double> want =
          ReferencePassV2(model, x.row(r).data(), r, s, opt.seed);
      if (model.task() == Task::kClassification) {
        want = testing::SoftmaxRef(want);
      }
      for (int d = 0; d < model.output_size(); ++d) {
        EXPECT_NEAR(pred.Sample(s, r, d), want[d],
                    rel * std::max(1.0, std::abs(want[d])))
            << TaskName(model.task()) << " row " << r << " sample " << s
            << " output " << d;
      }
    }
  }
}

TEST(LayerListTest, EngineEqualsPerSampleReference) {
  for (Task task : {Task::kRegression, Task::kClassification}) {
    const Model model = MustCreate(ConvSpec(task, 5));
    EXPECT_EQ(model.input_size(), 2 * 9 * 8);
    EXPECT_EQ(model.output_size(), 3);
    const RowMajorMatrixXf x = RandomInputs(3, model.input_size(), 8);
    Engine engine({.threads = 2});
    PredictOptions opt;
    opt.samples = 40;
    opt.seed = 99;
    opt.return_samples = true;
    auto pred = engine.Predict(model, View(x), opt);
    ASSERT_TRUE(pred.ok()) << pred.status();
    ExpectEqualsReference(model, x, opt, *pred, 1e-4);
    int dropped_differs = 0;
    for (int r = 0; r < 3; ++r) {
      for (int s = 1; s < 40; ++s) {
        if (pred->Sample(s, r, 0) != pred->Sample(0, r, 0)) ++dropped_differs;
      }
    }
    EXPECT_GT(dropped_differs, 100);  // the masks really vary by sample
  }
}

// dropout2d before a flatten and a dense layer still drops whole channels
// (the dense stage keeps its input's channel layout for the mask).
TEST(LayerListTest, Dropout2dBeforeFlattenDropsChannels) {
  std::mt19937 rng(12);
  ModelSpec spec;
  spec.task = Task::kRegression;
  spec.tau = 2.0;
  spec.input_shape = {2, 5, 5};
  spec.graph = {Conv(2, 4, 3, 1, 0, 1, 1, rng), Act(Activation::kRelu),
                Simple(LayerKind::kDropout2d, 0.5f),
                Simple(LayerKind::kFlatten), Dense(36, 2, rng)};
  spec.input_mean = Eigen::VectorXf::Zero(2);
  spec.input_std = Eigen::VectorXf::Ones(2);
  const Model model = MustCreate(spec);
  const RowMajorMatrixXf x = RandomInputs(2, 50, 5);
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 30;
  opt.seed = 4;
  opt.return_samples = true;
  auto pred = engine.Predict(model, View(x), opt);
  ASSERT_TRUE(pred.ok()) << pred.status();
  ExpectEqualsReference(model, x, opt, *pred, 1e-4);
}

TEST(LayerListTest, SameSeedBitIdenticalAcrossThreadsAndTiles) {
  const Model model = MustCreate(ConvSpec(Task::kRegression, 7));
  const RowMajorMatrixXf x = RandomInputs(4, model.input_size(), 2);
  std::vector<float> baseline;
  for (int threads : {1, 2, 4}) {
    Engine engine({.threads = threads});
    for (auto [spt, rpt] : std::vector<std::pair<int, int>>{
             {0, 0}, {1, 1}, {3, 2}, {64, 1}, {13, 0}}) {
      PredictOptions opt;
      opt.samples = 100;
      opt.seed = 31;
      opt.return_samples = true;
      opt.samples_per_tile = spt;
      opt.rows_per_tile = rpt;
      auto pred = engine.Predict(model, View(x), opt);
      ASSERT_TRUE(pred.ok()) << pred.status();
      if (baseline.empty()) {
        baseline = pred->sample_values;
        continue;
      }
      ASSERT_EQ(pred->sample_values.size(), baseline.size());
      EXPECT_EQ(std::memcmp(pred->sample_values.data(), baseline.data(),
                            baseline.size() * sizeof(float)),
                0)
          << "threads " << threads << " tile " << spt << "x" << rpt;
    }
  }
}

TEST(LayerListTest, ConvolutionPrefixRunsOncePerRow) {
  // LeNet's shape: no dropout before the dense head, so the convolutions
  // are the shared prefix; the answer must not depend on that.
  std::mt19937 rng(3);
  ModelSpec spec;
  spec.task = Task::kClassification;
  spec.input_shape = {1, 12, 12};
  spec.graph = {Conv(1, 3, 5, 1, 0, 1, 1, rng),
                Pool(LayerKind::kMaxPool2d, 2, 2, 0),
                Act(Activation::kRelu),
                Simple(LayerKind::kFlatten),
                Dense(48, 10, rng),
                Act(Activation::kRelu),
                Simple(LayerKind::kDropout, 0.5f),
                Dense(10, 4, rng)};
  spec.input_mean = Eigen::VectorXf::Zero(1);
  spec.input_std = Eigen::VectorXf::Ones(1);
  const Model model = MustCreate(spec);
  EXPECT_EQ(model.first_stochastic_layer(), model.num_stages() - 1);
  const RowMajorMatrixXf x = RandomInputs(2, 144, 4);
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 20;
  opt.seed = 5;
  opt.return_samples = true;
  auto pred = engine.Predict(model, View(x), opt);
  ASSERT_TRUE(pred.ok()) << pred.status();
  ExpectEqualsReference(model, x, opt, *pred, 1e-5);  // probabilities <= 1
}

// Deadlines and cancellation stop a convolutional request between tiles as
// they stop a dense one.
TEST(LayerListTest, DeadlineAndCancellationStopConvolutions) {
  const Model model = MustCreate(ConvSpec(Task::kClassification, 9));
  const RowMajorMatrixXf x = RandomInputs(8, model.input_size(), 1);
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 2000000;  // minutes of work if nothing stopped it
  opt.deadline = absl::Now() + absl::Milliseconds(50);
  const absl::Time start = absl::Now();
  auto late = engine.Predict(model, View(x), opt);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  opt.deadline = absl::InfiniteFuture();
  std::atomic<int> checks{0};
  opt.should_stop = [&] { return ++checks > 3; };
  auto cancelled = engine.Predict(model, View(x), opt);
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

TEST(LayerListTest, FileRoundTripAnswersIdentically) {
  const Model model = MustCreate(ConvSpec(Task::kClassification, 11));
  auto bytes = model.ToBytes();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto loaded = Model::FromBytes(*bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->has_layer_list());
  EXPECT_EQ(loaded->num_layers(), model.num_layers());
  const RowMajorMatrixXf x = RandomInputs(2, model.input_size(), 6);
  Engine engine({.threads = 2});
  PredictOptions opt;
  opt.samples = 30;
  opt.return_samples = true;
  auto a = engine.Predict(model, View(x), opt);
  auto b = engine.Predict(*loaded, View(x), opt);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->sample_values, b->sample_values);
  auto again = loaded->ToBytes();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *bytes);
}

// Each malformed list is refused with a status naming the layer.
TEST(LayerListTest, MalformedListsAreRefusedWithTheLayerNamed) {
  struct Case {
    const char* what;
    std::function<void(ModelSpec&)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"dense width", [](ModelSpec& s) { s.graph[12].weight.resize(12, 95); },
       "layer 12 (dense): weight is [12 x 95], expected [12 x 96]"},
      {"kernel larger than input",
       [](ModelSpec& s) {
         s.graph[5].kernel = {7, 7};
         s.graph[5].weight.resize(6, 2 * 49);
       },
       "layer 5 (conv2d): a 7 x 7 window"},
      {"negative padding",
       [](ModelSpec& s) {
         s.graph[0].padding = {-1, 0};
       },
       "layer 0 (conv2d): padding must be"},
      {"zero stride",
       [](ModelSpec& s) {
         s.graph[4].stride = {0, 2};
       },
       "layer 4 (max_pool2d): kernel, stride and dilation"},
      {"rate 1", [](ModelSpec& s) { s.graph[3].rate = 1.0f; },
       "layer 3 (dropout2d): rate 1 is outside [0, 1)"},
      {"groups", [](ModelSpec& s) { s.graph[5].groups = 3; },
       "layer 5 (conv2d): groups (3) must divide"},
      {"dense on an image",
       [](ModelSpec& s) { s.graph.erase(s.graph.begin() + 10); },
       "needs a flat input"},
      {"conv after flatten",
       [](ModelSpec& s) { std::swap(s.graph[10], s.graph[9]); },
       "layer 10 (avg_pool2d): its input was flattened"},
      {"batch_norm size", [](ModelSpec& s) { s.graph[7].var.resize(5); },
       "layer 7 (batch_norm): needs 6 values per tensor"},
      {"non-finite weight", [](ModelSpec& s) { s.graph[0].weight(0, 0) = NAN; },
       "layer 0 (conv2d): holds a non-finite value"},
      {"absurd size",
       [](ModelSpec& s) {
         s.input_shape = {2, 1 << 14, 1 << 14};
       },
       "at most 2^22 values, got [2, 16384, 16384]"},
      {"ends on a flattened image",
       [](ModelSpec& s) {
         s.graph.resize(5);
         s.graph.push_back(Simple(LayerKind::kFlatten));
       },
       "a model must end with a flat output"},
      {"pooling that grows past the bound",
       [](ModelSpec& s) {
         s.graph.resize(5);
         for (int i = 0; i < 1500; ++i) {
           s.graph.push_back(Pool(LayerKind::kMaxPool2d, 2, 1, 1));
         }
       },
       "exceeds 2^22 values per example"},
      {"batch_norm that overflows when folded",
       [](ModelSpec& s) {
         s.graph[1].gamma[0] = 1e38f;
         s.graph[1].var[0] = 0.0f;
         s.graph[1].eps = 1e-30;
       },
       "layer 1 (batch_norm): its normalisation overflows float"},
      {"ends on an image", [](ModelSpec& s) { s.graph.resize(5); },
       "a model must end with a flat output"},
      {"input standardisation size",
       [](ModelSpec& s) { s.input_mean.resize(3); }, "input_mean"},
  };
  for (const Case& c : cases) {
    ModelSpec spec = ConvSpec(Task::kRegression, 5);
    c.edit(spec);
    auto model = Model::Create(spec);
    ASSERT_FALSE(model.ok()) << c.what << " was accepted";
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(model.status().message()), HasSubstr(c.message))
        << c.what;
  }
}

TEST(LayerListTest, MalformedFilesAreRefused) {
  const Model model = MustCreate(ConvSpec(Task::kRegression, 5));
  const std::string good = *model.ToBytes();
  // Rewrites one metadata value in the header (same length keeps offsets).
  auto edited = [&](const std::string& from, const std::string& to) {
    std::string bytes = good;
    const size_t at = bytes.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) bytes.replace(at, from.size(), to);
    return Model::FromBytes(bytes);
  };
  auto unknown = edited("\"type\\\":\\\"gelu\\\"", "\"type\\\":\\\"selu\\\"");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("unknown type \"selu\""));
  auto shape = edited("[2, 9, 8]", "[2, 9, 0]");
  ASSERT_FALSE(shape.ok());
  EXPECT_THAT(std::string(shape.status().message()), HasSubstr("input_shape"));
  auto stride = edited("\"stride\\\":[1,1]", "\"stride\\\":[0,1]");
  ASSERT_FALSE(stride.ok());
  EXPECT_THAT(std::string(stride.status().message()),
              HasSubstr("layer 0 (conv2d)"));
  auto tensor = edited("layers.12.weight", "layers.13.weight");
  ASSERT_FALSE(tensor.ok());
  EXPECT_THAT(std::string(tensor.status().message()),
              HasSubstr("layer 12 (dense): missing tensor"));
  auto overflow = edited("[2, 9, 8]", "[16777216, 16777216, 65536]");
  ASSERT_FALSE(overflow.ok());  // (the header is rewritten, not the offsets)
  auto attribute = edited("count_include_pad", "count_include_pat");
  ASSERT_FALSE(attribute.ok());
  EXPECT_THAT(std::string(attribute.status().message()),
              HasSubstr("\"count_include_pat\" is not an attribute of "
                        "avg_pool2d"));
  auto kernel = edited("\"kernel_size\\\":[3,3]", "\"kernel_size\\\":[3,5]");
  ASSERT_FALSE(kernel.ok());
  EXPECT_THAT(std::string(kernel.status().message()),
              HasSubstr("layer 0 (conv2d): kernel_size [3, 5] disagrees"));
}

}  // namespace
}  // namespace mcdrop
