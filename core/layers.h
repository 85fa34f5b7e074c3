// Copyright 2026 The mcdrop Authors.
//
// Format v2's layer list (docs/model-format.md) and the stages the engine
// runs.
//
// A v2 model is an ordered list of layers (`LayerDef`), as a PyTorch
// nn.Sequential would list them: dense, conv2d, pooling, flatten,
// batch_norm, activations, dropout and dropout2d. `CompileStages` turns the
// list (or a v1 model's dense stack) into `Stage`s: each stage is one
// computing layer with the dropout that precedes it applied to its input and
// the activation that follows it fused in; batch_norm directly after a
// dense or conv2d layer is folded into its weights.
//
// Layout. Between stages each (row, sample) column holds one example's
// activations channels-last: position-major, channel-minor ("HWC"), so that
// a convolution is one product of the layer's [out_channels x patch] weights
// with the column's patches and its output is again HWC. A flat tensor is the
// case H = W = 1. Weights are permuted into this order when the stages are
// made; files and ModelSpec keep PyTorch's layouts (conv [OC, IC/g, KH, KW],
// dense [out, in] with `in` in the CHW order of PyTorch's flatten).

#ifndef MCDROP_CORE_LAYERS_H_
#define MCDROP_CORE_LAYERS_H_

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dense_kernel.h"

namespace mcdrop {

enum class Activation { kRelu, kTanh, kSigmoid, kGelu, kIdentity, kLeakyRelu };

enum class LayerKind {
  kDense,
  kConv2d,
  kMaxPool2d,
  kAvgPool2d,
  kFlatten,
  kBatchNorm,
  kActivation,
  kDropout,
  kDropout2d,
};
absl::string_view LayerKindName(LayerKind kind);  // "dense", "conv2d", ...
absl::string_view ActivationName(Activation activation);  // "relu", ...

// One layer of a v2 model. Which fields matter depends on `kind`.
struct LayerDef {
  LayerKind kind = LayerKind::kDense;
  // dense: outputs; conv2d: output channels.
  int out = 0;
  // conv2d and pooling: [height, width] each.
  std::array<int, 2> kernel = {1, 1}, stride = {1, 1}, padding = {0, 0},
                     dilation = {1, 1};
  int groups = 1;                 // conv2d
  bool count_include_pad = true;  // avg_pool2d (PyTorch's default)
  Activation activation = Activation::kIdentity;  // kActivation
  float negative_slope = 0.01f;                   // leaky_relu
  float rate = 0.0f;  // dropout, dropout2d: in [0, 1)
  double eps = 1e-5;  // batch_norm
  // dense: [out x in]; conv2d: [OC x (IC/groups * KH * KW)], each row the
  // PyTorch kernel [IC/g, KH, KW] flattened; batch_norm: unused.
  Eigen::MatrixXf weight;
  // dense, conv2d: bias [out] (zeros when the layer has none);
  // batch_norm: beta.
  Eigen::VectorXf bias;
  // batch_norm: gamma, running mean, running variance, [C] each.
  Eigen::VectorXf gamma, mean, var;
};

// Bounds every layer list is checked against before anything is allocated:
// values per example between layers, weights per layer, multiply-adds of
// one pass.
inline constexpr int64_t kMaxValuesPerExample = int64_t{1} << 22;
inline constexpr int64_t kMaxWeightsPerLayer = int64_t{1} << 28;
inline constexpr int64_t kMaxMultiplyAddsPerPass = int64_t{1} << 36;

// A tensor's shape per example: channels, height, width (flat: [n, 1, 1]).
struct Shape {
  int c = 0, h = 1, w = 1;
  // c * h * w; callers keep each shape within kMaxValuesPerExample (see
  // BoundedSize) so that this never overflows.
  int64_t size() const { return static_cast<int64_t>(c) * h * w; }
  bool flat() const { return h == 1 && w == 1; }
};

// The index of element (c, y, x) of a tensor of shape `s` in the engine's
// channels-last layout (PyTorch's CHW index is (c * h + y) * w + x).
int64_t HwcIndex(const Shape& s, int c, int y, int x);

// c * h * w when all are positive and the product is at most
// kMaxValuesPerExample, else -1 (no overflow for any int inputs).
int64_t BoundedSize(int64_t c, int64_t h, int64_t w);

// One computing step of the engine (see the file comment).
struct Stage {
  enum class Op { kDense, kConv, kMaxPool, kAvgPool, kAffine, kCopy };
  Op op = Op::kDense;
  Shape in, out;
  // Dropout on this stage's input: element-wise, or one decision per
  // channel (dropout2d). `mask_layer` is the layer number in the mask
  // generator's counter.
  float drop_rate = 0.0f;
  bool drop_channels = false;
  uint32_t mask_layer = 0;
  Activation activation = Activation::kIdentity;
  float negative_slope = 0.01f;
  // kDense: [out x in] in the engine's input order; kConv: per group,
  // [OC/g x (KH * KW * IC/g)] with patches ordered (ky, kx, channel).
  Eigen::MatrixXf weight;
  std::vector<std::shared_ptr<const DenseKernel>> kernels;  // one per group
  // kDense, kConv: bias; kAffine: shift.
  Eigen::VectorXf bias;
  Eigen::VectorXf scale;  // kAffine
  std::array<int, 2> kernel = {1, 1}, stride = {1, 1}, padding = {0, 0},
                     dilation = {1, 1};
  int groups = 1;
  bool count_include_pad = true;
  // Multiply-adds per example (the products; pooling counts its window).
  int64_t multiply_adds = 0;
};

// The output size of a convolution or pooling window along one axis, or
// -1 when the window does not fit: floor((n + 2p - d (k - 1) - 1) / s) + 1.
int64_t WindowOutput(int64_t n, int k, int s, int p, int d);

// Validates `layers` on an input of shape `input` and compiles them. Errors
// are InvalidArgument naming the layer ("layer 3 (conv2d): ..."): shapes
// that do not chain, windows larger than their input, negative padding, zero
// strides, rates outside [0, 1), non-finite values (also after folding a
// batch_norm), sizes over the bounds above, and a model whose output is a
// flattened image (its order would differ from PyTorch's).
absl::StatusOr<std::vector<Stage>> CompileStages(
    const std::vector<LayerDef>& layers, Shape input, Precision precision);

// The JSON of the `layers` metadata key (without tensors) and back.
// `ParseLayerList` reads the attributes; tensors are attached by the model
// loader.
std::string LayerListJson(const std::vector<LayerDef>& layers);
absl::StatusOr<std::vector<LayerDef>> ParseLayerList(absl::string_view json);

}  // namespace mcdrop

#endif  // MCDROP_CORE_LAYERS_H_
