// Copyright 2026 The mcdrop Authors.

#include "core/layers.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mcdrop {
namespace {

constexpr int64_t kMaxWeights = kMaxWeightsPerLayer;
constexpr int kMaxWindow = 1 << 16;

struct KindName {
  LayerKind kind;
  const char* name;
};
constexpr KindName kKinds[] = {
    {LayerKind::kDense, "dense"},
    {LayerKind::kConv2d, "conv2d"},
    {LayerKind::kMaxPool2d, "max_pool2d"},
    {LayerKind::kAvgPool2d, "avg_pool2d"},
    {LayerKind::kFlatten, "flatten"},
    {LayerKind::kBatchNorm, "batch_norm"},
    {LayerKind::kActivation, "activation"},
    {LayerKind::kDropout, "dropout"},
    {LayerKind::kDropout2d, "dropout2d"},
};

struct ActivationNameEntry {
  Activation activation;
  const char* name;
};
constexpr ActivationNameEntry kActivations[] = {
    {Activation::kRelu, "relu"},         {Activation::kTanh, "tanh"},
    {Activation::kSigmoid, "sigmoid"},   {Activation::kGelu, "gelu"},
    {Activation::kIdentity, "identity"}, {Activation::kLeakyRelu, "leaky_relu"},
};

// Columns of a dense weight that reads a CHW-flattened tensor of shape
// `physical`, reordered for the engine's HWC layout.
Eigen::MatrixXf PermuteDenseInputs(const Eigen::MatrixXf& w,
                                   const Shape& physical) {
  if (physical.flat()) return w;
  Eigen::MatrixXf out(w.rows(), w.cols());
  int64_t chw = 0;
  for (int c = 0; c < physical.c; ++c)
    for (int y = 0; y < physical.h; ++y)
      for (int x = 0; x < physical.w; ++x)
        out.col(HwcIndex(physical, c, y, x)) = w.col(chw++);
  return out;
}

// A per-feature vector in CHW order of `physical`, reordered to HWC.
Eigen::VectorXf PermuteFeatures(const Eigen::VectorXf& v,
                                const Shape& physical) {
  if (physical.flat()) return v;
  Eigen::VectorXf out(v.size());
  int64_t chw = 0;
  for (int c = 0; c < physical.c; ++c)
    for (int y = 0; y < physical.h; ++y)
      for (int x = 0; x < physical.w; ++x)
        out[HwcIndex(physical, c, y, x)] = v[chw++];
  return out;
}

// The state of the compilation between layers.
struct Compiler {
  Precision precision;
  std::vector<Stage> stages;
  Shape physical;          // the layout in memory (HWC of this shape)
  bool flattened = false;  // the tensor is logically flat
  std::optional<Stage> pending_drop;  // rate, kind, mask layer
  bool fusable = false;  // the last stage may take an activation / BN

  Shape Logical() const {
    return flattened ? Shape{static_cast<int>(physical.size()), 1, 1}
                     : physical;
  }

  // Appends `s` (its `in` and `out` set), consuming the pending dropout.
  void Push(Stage s) {
    if (pending_drop) {
      s.drop_rate = pending_drop->drop_rate;
      s.drop_channels = pending_drop->drop_channels;
      s.mask_layer = pending_drop->mask_layer;
      pending_drop.reset();
    }
    stages.push_back(std::move(s));
  }

  Stage Copy() const {
    Stage s;
    s.op = Stage::Op::kCopy;
    s.in = s.out = physical;
    return s;
  }
};

absl::Status LayerError(size_t i, const LayerDef& l, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("layer ", i, " (", LayerKindName(l.kind), "): ", what));
}

absl::StatusOr<std::shared_ptr<const DenseKernel>> MakeKernel(
    const Eigen::MatrixXf& w, Precision precision) {
  auto k = DenseKernel::Create(w, precision);
  if (!k.ok()) return k.status();
  return std::shared_ptr<const DenseKernel>(*std::move(k));
}

absl::Status CheckWeights(size_t i, const LayerDef& l, int64_t rows,
                          int64_t cols) {
  if (l.weight.rows() != rows || l.weight.cols() != cols) {
    return LayerError(
        i, l,
        absl::StrCat("weight is [", l.weight.rows(), " x ", l.weight.cols(),
                     "], expected [", rows, " x ", cols, "]"));
  }
  if (l.bias.size() != rows) {
    return LayerError(
        i, l,
        absl::StrCat("bias has ", l.bias.size(), " values, expected ", rows));
  }
  if (!l.weight.allFinite() || !l.bias.allFinite()) {
    return LayerError(i, l, "holds a non-finite value");
  }
  return absl::OkStatus();
}

absl::Status CheckWindow(size_t i, const LayerDef& l, const Shape& in,
                         Shape* out) {
  for (int a = 0; a < 2; ++a) {
    if (l.kernel[a] < 1 || l.kernel[a] > kMaxWindow || l.stride[a] < 1 ||
        l.stride[a] > kMaxWindow || l.dilation[a] < 1 ||
        l.dilation[a] > kMaxWindow) {
      return LayerError(i, l,
                        "kernel, stride and dilation must be in [1, 65536]");
    }
    if (l.padding[a] < 0 || l.padding[a] > kMaxWindow) {
      return LayerError(i, l, "padding must be in [0, 65536]");
    }
  }
  const int64_t oh =
      WindowOutput(in.h, l.kernel[0], l.stride[0], l.padding[0], l.dilation[0]);
  const int64_t ow =
      WindowOutput(in.w, l.kernel[1], l.stride[1], l.padding[1], l.dilation[1]);
  if (oh >= 1 && ow >= 1 && BoundedSize(out->c, oh, ow) < 0) {
    return LayerError(i, l,
                      absl::StrCat("its output [", out->c, ", ", oh, ", ", ow,
                                   "] exceeds 2^22 values per example"));
  }
  if (oh < 1 || ow < 1) {
    return LayerError(
        i, l,
        absl::StrCat("a ", l.kernel[0], " x ", l.kernel[1],
                     " window (dilation ", l.dilation[0], " x ", l.dilation[1],
                     ", padding ", l.padding[0], " x ", l.padding[1],
                     ") does not fit its ", in.h, " x ", in.w, " input"));
  }
  *out = Shape{out->c, static_cast<int>(oh), static_cast<int>(ow)};
  return absl::OkStatus();
}

absl::Status AddDense(size_t i, const LayerDef& l, Compiler& k) {
  if (!k.physical.flat() && !k.flattened) {
    return LayerError(
        i, l,
        absl::StrCat("needs a flat input but gets [", k.physical.c, ", ",
                     k.physical.h, ", ", k.physical.w,
                     "] (add a flatten layer before it)"));
  }
  const int64_t in = k.physical.size();
  if (l.weight.rows() < 1 || l.weight.rows() > kMaxValuesPerExample ||
      static_cast<int64_t>(l.weight.size()) > kMaxWeights) {
    return LayerError(i, l, "needs 1 to 2^22 outputs and at most 2^28 weights");
  }
  auto status = CheckWeights(i, l, l.weight.rows(), in);
  if (!status.ok()) return status;
  Stage s;
  s.op = Stage::Op::kDense;
  // The input keeps its physical shape, so that a dropout2d before a
  // flatten still drops whole channels.
  s.in = k.physical;
  s.out = Shape{static_cast<int>(l.weight.rows()), 1, 1};
  s.weight = PermuteDenseInputs(l.weight, k.physical);
  s.bias = l.bias;
  s.multiply_adds = l.weight.size();
  auto kernel = MakeKernel(s.weight, k.precision);
  if (!kernel.ok()) return kernel.status();
  s.kernels.push_back(*std::move(kernel));
  k.Push(std::move(s));
  k.physical = k.stages.back().out;
  k.flattened = false;
  k.fusable = true;
  return absl::OkStatus();
}

absl::Status AddConv(size_t i, const LayerDef& l, Compiler& k) {
  if (k.flattened) return LayerError(i, l, "its input was flattened");
  const Shape in = k.physical;
  const int g = l.groups;
  if (g < 1 || in.c % g != 0 || l.out < 1 || l.out % g != 0) {
    return LayerError(
        i, l,
        absl::StrCat("groups (", g, ") must divide the ", in.c,
                     " input and the ", l.out, " output channels"));
  }
  Shape out{l.out, 1, 1};
  auto status = CheckWindow(i, l, in, &out);
  if (!status.ok()) return status;
  const int icg = in.c / g, ocg = l.out / g;
  const int64_t patch = static_cast<int64_t>(icg) * l.kernel[0] * l.kernel[1];
  if (static_cast<int64_t>(l.out) * patch > kMaxWeights ||
      BoundedSize(patch, out.h, out.w) < 0) {
    return LayerError(i, l,
                      "is too large (over 2^28 weights or 2^22 patch values)");
  }
  status = CheckWeights(i, l, l.out, patch);
  if (!status.ok()) return status;
  Stage s;
  s.op = Stage::Op::kConv;
  s.in = in;
  s.out = out;
  s.kernel = l.kernel;
  s.stride = l.stride;
  s.padding = l.padding;
  s.dilation = l.dilation;
  s.groups = g;
  s.bias = l.bias;
  s.multiply_adds = static_cast<int64_t>(l.out) * patch * out.h * out.w;
  // Rows of group gi, columns reordered from (ic, ky, kx) to (ky, kx, ic).
  s.weight.resize(l.out, patch);
  for (int oc = 0; oc < l.out; ++oc) {
    int64_t src = 0;
    for (int ic = 0; ic < icg; ++ic)
      for (int ky = 0; ky < l.kernel[0]; ++ky)
        for (int kx = 0; kx < l.kernel[1]; ++kx)
          s.weight(oc, (static_cast<int64_t>(ky) * l.kernel[1] + kx) * icg +
                           ic) = l.weight(oc, src++);
  }
  for (int gi = 0; gi < g; ++gi) {
    auto kernel = MakeKernel(
        s.weight.middleRows(static_cast<int64_t>(gi) * ocg, ocg), k.precision);
    if (!kernel.ok()) return kernel.status();
    s.kernels.push_back(*std::move(kernel));
  }
  k.Push(std::move(s));
  k.physical = out;
  k.fusable = true;
  return absl::OkStatus();
}

absl::Status AddPool(size_t i, const LayerDef& l, Compiler& k) {
  if (k.flattened) return LayerError(i, l, "its input was flattened");
  for (int a = 0; a < 2; ++a) {
    if (l.padding[a] > l.kernel[a] / 2) {
      return LayerError(i, l, "padding must be at most half the kernel");
    }
  }
  Shape out{k.physical.c, 1, 1};
  auto status = CheckWindow(i, l, k.physical, &out);
  if (!status.ok()) return status;
  Stage s;
  s.op = l.kind == LayerKind::kMaxPool2d ? Stage::Op::kMaxPool
                                         : Stage::Op::kAvgPool;
  s.in = k.physical;
  s.out = out;
  s.kernel = l.kernel;
  s.stride = l.stride;
  s.padding = l.padding;
  s.dilation = l.dilation;
  s.count_include_pad = l.count_include_pad;
  s.multiply_adds = out.size() * l.kernel[0] * l.kernel[1];
  k.Push(std::move(s));
  k.physical = out;
  k.fusable = true;  // an activation may follow (batch_norm is not folded)
  return absl::OkStatus();
}

absl::Status AddBatchNorm(size_t i, const LayerDef& l, Compiler& k) {
  const Shape logical = k.Logical();
  const int c = logical.c;
  for (const Eigen::VectorXf* v : {&l.gamma, &l.bias, &l.mean, &l.var}) {
    if (v->size() != c) {
      return LayerError(
          i, l,
          absl::StrCat("needs ", c, " values per tensor, has ", v->size()));
    }
    if (!v->allFinite()) return LayerError(i, l, "holds a non-finite value");
  }
  if (!(l.eps >= 0.0 && std::isfinite(l.eps)) ||
      ((l.var.array().cast<double>() + l.eps) <= 0.0).any()) {
    return LayerError(i, l, "running_var + eps must be > 0");
  }
  const Eigen::VectorXf scale = (l.gamma.array().cast<double>() /
                                 (l.var.array().cast<double>() + l.eps).sqrt())
                                    .cast<float>();
  const Eigen::VectorXf shift =
      (l.bias.array().cast<double>() -
       l.mean.array().cast<double>() * scale.array().cast<double>())
          .cast<float>();
  if (!scale.allFinite() || !shift.allFinite()) {
    return LayerError(i, l, "its normalisation overflows float");
  }
  Stage* last = k.stages.empty() ? nullptr : &k.stages.back();
  if (k.fusable && !k.pending_drop && last != nullptr &&
      last->activation == Activation::kIdentity &&
      (last->op == Stage::Op::kDense || last->op == Stage::Op::kConv) &&
      last->out.c == c && !k.flattened) {
    // Folded: W' = diag(scale) W, b' = scale * b + shift.
    last->weight = scale.asDiagonal() * last->weight;
    last->bias = scale.cwiseProduct(last->bias) + shift;
    if (!last->weight.allFinite() || !last->bias.allFinite()) {
      return LayerError(i, l, "folding it gives non-finite weights");
    }
    last->kernels.clear();
    const int64_t ocg = last->out.c / last->groups;
    for (int gi = 0; gi < last->groups; ++gi) {
      auto kernel = MakeKernel(
          last->weight.middleRows(static_cast<int64_t>(gi) * ocg, ocg),
          k.precision);
      if (!kernel.ok()) return kernel.status();
      last->kernels.push_back(*std::move(kernel));
    }
    return absl::OkStatus();
  }
  Stage s = k.Copy();
  s.op = Stage::Op::kAffine;
  if (k.flattened) {
    // BatchNorm1d over features in CHW order: one value per element.
    s.scale = PermuteFeatures(scale, k.physical);
    s.bias = PermuteFeatures(shift, k.physical);
  } else {
    s.scale = scale;
    s.bias = shift;
  }
  k.Push(std::move(s));
  k.fusable = true;
  return absl::OkStatus();
}

absl::Status AddLayer(size_t i, const LayerDef& l, Compiler& k) {
  switch (l.kind) {
    case LayerKind::kDense:
      return AddDense(i, l, k);
    case LayerKind::kConv2d:
      return AddConv(i, l, k);
    case LayerKind::kMaxPool2d:
    case LayerKind::kAvgPool2d:
      return AddPool(i, l, k);
    case LayerKind::kFlatten:
      k.flattened = true;
      return absl::OkStatus();
    case LayerKind::kBatchNorm:
      return AddBatchNorm(i, l, k);
    case LayerKind::kActivation: {
      if (l.activation == Activation::kLeakyRelu &&
          !std::isfinite(l.negative_slope)) {
        return LayerError(i, l, "negative_slope must be finite");
      }
      if (!k.fusable || k.pending_drop || k.stages.empty() ||
          k.stages.back().activation != Activation::kIdentity) {
        k.Push(k.Copy());
      }
      k.stages.back().activation = l.activation;
      k.stages.back().negative_slope = l.negative_slope;
      k.fusable = false;
      return absl::OkStatus();
    }
    case LayerKind::kDropout:
    case LayerKind::kDropout2d: {
      if (!(l.rate >= 0.0f && l.rate < 1.0f)) {
        return LayerError(i, l,
                          absl::StrCat("rate ", l.rate, " is outside [0, 1)"));
      }
      if (l.kind == LayerKind::kDropout2d && k.flattened) {
        return LayerError(i, l, "needs channels, but its input was flattened");
      }
      if (k.pending_drop) k.Push(k.Copy());
      Stage d;
      d.drop_rate = l.rate;
      d.drop_channels = l.kind == LayerKind::kDropout2d;
      d.mask_layer = static_cast<uint32_t>(i);
      k.pending_drop = d;
      k.fusable = false;
      return absl::OkStatus();
    }
  }
  return LayerError(i, l, "unknown layer kind");
}

int64_t IntAttribute(const nlohmann::json& j, const char* key, int64_t fallback,
                     bool* ok) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_number_integer()) {
    *ok = false;
    return fallback;
  }
  return it->get<int64_t>();
}

// An attribute given as one integer or as [height, width].
bool PairAttribute(const nlohmann::json& j, const char* key,
                   std::array<int, 2>* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  auto fits = [](const nlohmann::json& v) {
    return v.is_number_integer() && v.get<int64_t>() >= -(1 << 30) &&
           v.get<int64_t>() <= (1 << 30);
  };
  if (fits(*it)) {
    (*out)[0] = (*out)[1] = static_cast<int>(it->get<int64_t>());
    return true;
  }
  if (it->is_array() && it->size() == 2 && fits((*it)[0]) && fits((*it)[1])) {
    (*out)[0] = static_cast<int>((*it)[0].get<int64_t>());
    (*out)[1] = static_cast<int>((*it)[1].get<int64_t>());
    return true;
  }
  return false;
}

// The attributes a layer's JSON object may have.
std::vector<std::string> AttributesOf(const LayerDef& l) {
  switch (l.kind) {
    case LayerKind::kConv2d:
      return {"type", "kernel_size", "stride", "padding", "dilation", "groups"};
    case LayerKind::kMaxPool2d:
      return {"type", "kernel_size", "stride", "padding", "dilation"};
    case LayerKind::kAvgPool2d:
      return {"type", "kernel_size", "stride", "padding", "count_include_pad"};
    case LayerKind::kBatchNorm:
      return {"type", "eps"};
    case LayerKind::kDropout:
    case LayerKind::kDropout2d:
      return {"type", "p"};
    case LayerKind::kActivation:
      if (l.activation == Activation::kLeakyRelu) {
        return {"type", "negative_slope"};
      }
      return {"type"};
    default:
      return {"type"};
  }
}

absl::StatusOr<LayerDef> ParseLayer(size_t i, const nlohmann::json& j) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata \"layers\": layer ", i, ": ", what));
  };
  if (!j.is_object()) return error("must be a JSON object");
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return error("needs a \"type\" string");
  }
  const std::string name = type->get<std::string>();
  LayerDef l;
  bool known = false;
  for (const KindName& k : kKinds) {
    if (name == k.name && k.kind != LayerKind::kActivation) {
      l.kind = k.kind;
      known = true;
    }
  }
  for (const ActivationNameEntry& a : kActivations) {
    if (name == a.name) {
      l.kind = LayerKind::kActivation;
      l.activation = a.activation;
      known = true;
    }
  }
  if (!known) {
    return error(absl::StrCat(
        "unknown type \"", name,
        "\" (expected dense, conv2d, max_pool2d, avg_pool2d, flatten, "
        "batch_norm, dropout, dropout2d, relu, leaky_relu, tanh, sigmoid, "
        "gelu or identity)"));
  }
  const std::vector<std::string> allowed = AttributesOf(l);
  for (const auto& [key, value] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return error(absl::StrCat("\"", key, "\" is not an attribute of ", name,
                                " (it takes: ", absl::StrJoin(allowed, ", "),
                                ")"));
    }
  }
  const bool pool =
      l.kind == LayerKind::kMaxPool2d || l.kind == LayerKind::kAvgPool2d;
  if (pool && !j.contains("kernel_size")) return error("needs kernel_size");
  bool ok = true;
  if (l.kind == LayerKind::kConv2d || pool) {
    // A convolution's kernel size comes from its weight; given here, the
    // loader checks that the two agree ({0, 0}: not given).
    if (l.kind == LayerKind::kConv2d) l.kernel = {0, 0};
    ok = PairAttribute(j, "kernel_size", &l.kernel);
    if (l.kind != LayerKind::kConv2d) l.stride = l.kernel;  // PyTorch default
    ok = ok && PairAttribute(j, "stride", &l.stride) &&
         PairAttribute(j, "padding", &l.padding) &&
         PairAttribute(j, "dilation", &l.dilation);
    if (!ok) {
      return error(
          "kernel_size, stride, padding and dilation must be integers or "
          "[height, width] pairs");
    }
  }
  if (l.kind == LayerKind::kConv2d) {
    const int64_t groups = IntAttribute(j, "groups", 1, &ok);
    if (!ok || groups < 1 || groups > (1 << 20)) {
      return error("groups must be an integer >= 1");
    }
    l.groups = static_cast<int>(groups);
  }
  if (l.kind == LayerKind::kAvgPool2d) {
    auto it = j.find("count_include_pad");
    if (it != j.end()) {
      if (!it->is_boolean()) return error("count_include_pad must be a bool");
      l.count_include_pad = it->get<bool>();
    }
  }
  auto number = [&](const char* key, double* out) -> bool {
    auto it = j.find(key);
    if (it == j.end()) return true;
    if (!it->is_number()) return false;
    *out = it->get<double>();
    return std::isfinite(*out);
  };
  double value = 0;
  if (l.kind == LayerKind::kDropout || l.kind == LayerKind::kDropout2d) {
    if (j.find("p") == j.end() || !number("p", &value)) {
      return error("needs a drop rate \"p\"");
    }
    l.rate = static_cast<float>(value);
  }
  if (l.kind == LayerKind::kBatchNorm) {
    value = l.eps;
    if (!number("eps", &value)) return error("eps must be a number");
    l.eps = value;
  }
  if (l.activation == Activation::kLeakyRelu) {
    value = l.negative_slope;
    if (!number("negative_slope", &value)) {
      return error("negative_slope must be a number");
    }
    l.negative_slope = static_cast<float>(value);
  }
  return l;
}

}  // namespace

absl::string_view ActivationName(Activation activation) {
  for (const ActivationNameEntry& a : kActivations) {
    if (a.activation == activation) return a.name;
  }
  return "?";
}

absl::string_view LayerKindName(LayerKind kind) {
  for (const KindName& k : kKinds) {
    if (k.kind == kind) return k.name;
  }
  return "?";
}

int64_t HwcIndex(const Shape& s, int c, int y, int x) {
  return (static_cast<int64_t>(y) * s.w + x) * s.c + c;
}

int64_t BoundedSize(int64_t c, int64_t h, int64_t w) {
  if (c < 1 || h < 1 || w < 1) return -1;
  if (h > kMaxValuesPerExample / w) return -1;
  if (c > kMaxValuesPerExample / (h * w)) return -1;
  return c * h * w;
}

int64_t WindowOutput(int64_t n, int k, int s, int p, int d) {
  const int64_t span = static_cast<int64_t>(d) * (k - 1) + 1;
  const int64_t padded = n + 2 * static_cast<int64_t>(p);
  if (s < 1 || padded < span) return -1;
  return (padded - span) / s + 1;
}

absl::StatusOr<std::vector<Stage>> CompileStages(
    const std::vector<LayerDef>& layers, Shape input, Precision precision) {
  if (BoundedSize(input.c, input.h, input.w) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("input shape [", input.c, ", ", input.h, ", ", input.w,
                     "] must be positive with at most 2^22 values"));
  }
  Compiler k;
  k.precision = precision;
  k.physical = input;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto status = AddLayer(i, layers[i], k);
    if (!status.ok()) return status;
  }
  if (k.pending_drop) k.Push(k.Copy());
  if (k.stages.empty()) {
    return absl::InvalidArgumentError(
        "the layer list computes nothing (no dense, conv2d or pooling layer)");
  }
  if (!k.physical.flat()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the last layer's output is [", k.physical.c, ", ", k.physical.h, ", ",
        k.physical.w,
        "]: a model must end with a flat output (e.g. flatten then dense)"));
  }
  int64_t macs = 0;
  for (const Stage& s : k.stages) macs += s.multiply_adds;
  if (macs > kMaxMultiplyAddsPerPass) {
    return absl::InvalidArgumentError(absl::StrCat(
        "one pass takes ", macs, " multiply-adds, over the bound of 2^36"));
  }
  return std::move(k.stages);
}

namespace {

// A float as the double its shortest text reads as (0.3f -> 0.3, not
// 0.30000001192092896), so the JSON stays readable and reads back exactly.
double Readable(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

}  // namespace

std::string LayerListJson(const std::vector<LayerDef>& layers) {
  // (Every attribute written here is one AttributesOf allows.)
  nlohmann::json list = nlohmann::json::array();
  auto pair = [](const std::array<int, 2>& p) {
    return nlohmann::json::array({p[0], p[1]});
  };
  for (const LayerDef& l : layers) {
    nlohmann::json j;
    if (l.kind == LayerKind::kActivation) {
      j["type"] = std::string(ActivationName(l.activation));
      if (l.activation == Activation::kLeakyRelu) {
        j["negative_slope"] = Readable(l.negative_slope);
      }
    } else {
      j["type"] = std::string(LayerKindName(l.kind));
    }
    switch (l.kind) {
      case LayerKind::kConv2d:
        j["groups"] = l.groups;
        j["dilation"] = pair(l.dilation);
        [[fallthrough]];
      case LayerKind::kMaxPool2d:
      case LayerKind::kAvgPool2d:
        j["kernel_size"] = pair(l.kernel);
        j["stride"] = pair(l.stride);
        j["padding"] = pair(l.padding);
        if (l.kind == LayerKind::kAvgPool2d) {
          j["count_include_pad"] = l.count_include_pad;
        }
        if (l.kind == LayerKind::kMaxPool2d) j["dilation"] = pair(l.dilation);
        break;
      case LayerKind::kDropout:
      case LayerKind::kDropout2d:
        j["p"] = Readable(l.rate);
        break;
      case LayerKind::kBatchNorm:
        j["eps"] = l.eps;
        break;
      default:
        break;
    }
    list.push_back(std::move(j));
  }
  return list.dump();
}

absl::StatusOr<std::vector<LayerDef>> ParseLayerList(absl::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (!j.is_array() || j.empty()) {
    return absl::InvalidArgumentError(
        "metadata \"layers\": expected a non-empty JSON list of layers");
  }
  if (j.size() > 10000) {
    return absl::InvalidArgumentError(
        "metadata \"layers\": more than 10000 layers");
  }
  std::vector<LayerDef> layers;
  for (size_t i = 0; i < j.size(); ++i) {
    auto layer = ParseLayer(i, j[i]);
    if (!layer.ok()) return layer.status();
    layers.push_back(*std::move(layer));
  }
  return layers;
}

}  // namespace mcdrop
