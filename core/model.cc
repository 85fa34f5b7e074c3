// Copyright 2026 The mcdrop Authors.

#include "core/model.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"
#include "core/safetensors.h"
#include "core/status_macros.h"

namespace mcdrop {
namespace {

using RowMajorMatrixXf =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Shortest text that reads back as the same value.
template <typename Float>
std::string Shortest(Float v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

bool AllFinite(const Eigen::Ref<const Eigen::MatrixXf>& m) {
  return m.allFinite();
}

absl::Status CheckVector(const Eigen::VectorXf& v, int size,
                         absl::string_view name, bool positive) {
  if (v.size() == 0) return absl::OkStatus();
  if (v.size() != size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" has ", v.size(), " values, expected ", size));
  }
  if (!v.allFinite()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" holds a non-finite value"));
  }
  if (positive && (v.array() <= 0.0f).any()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" holds a value <= 0"));
  }
  return absl::OkStatus();
}

absl::Status MetadataError(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("metadata \"", key, "\": ", what));
}

absl::StatusOr<std::vector<double>> ParseDropout(const std::string& text,
                                                 int num_layers) {
  std::vector<double> rates;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_number()) {
    rates.assign(num_layers, j.get<double>());
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (!v.is_number()) {
        return MetadataError("dropout", "every element must be a number");
      }
      rates.push_back(v.get<double>());
    }
  } else {
    return MetadataError(
        "dropout",
        absl::StrCat("expected a JSON list of drop rates, one per layer, or "
                     "a single rate; got \"",
                     text, "\""));
  }
  if (static_cast<int>(rates.size()) != num_layers) {
    return MetadataError(
        "dropout", absl::StrCat("has ", rates.size(), " rates for ", num_layers,
                                " layers"));
  }
  return rates;
}

// Fetches a tensor as float, checking its rank and dimensions.
absl::StatusOr<std::vector<float>> ReadTensor(const Safetensors& st,
                                              const std::string& name,
                                              std::vector<int64_t>* shape) {
  *shape = st.tensors().at(name).shape;
  return st.ReadAsFloat(name);
}

absl::StatusOr<Eigen::VectorXf> ReadVector(const Safetensors& st,
                                           const std::string& name) {
  std::vector<int64_t> shape;
  MCDROP_ASSIGN_OR_RETURN(std::vector<float> v, ReadTensor(st, name, &shape));
  if (shape.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" must have rank 1, has shape [",
                     absl::StrJoin(shape, ", "), "]"));
  }
  return Eigen::Map<Eigen::VectorXf>(v.data(),
                                     static_cast<Eigen::Index>(v.size()));
}

}  // namespace

absl::string_view TaskName(Task task) {
  return task == Task::kRegression ? "regression" : "classification";
}

absl::StatusOr<Task> ParseTask(absl::string_view name) {
  if (name == "regression") return Task::kRegression;
  if (name == "classification") return Task::kClassification;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown task \"", name, "\" (expected regression or classification)"));
}

absl::StatusOr<Activation> ParseActivation(absl::string_view name) {
  for (Activation a :
       {Activation::kRelu, Activation::kTanh, Activation::kSigmoid,
        Activation::kGelu, Activation::kIdentity}) {
    if (name == ActivationName(a)) return a;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown activation \"", name,
                   "\" (expected relu, tanh, sigmoid, gelu or identity)"));
}

Model::Model(ModelSpec spec) : spec_(std::move(spec)) {}

namespace {

// A v1 model's dense stack as stages: stage i is layer i with its input
// dropout (mask layer i) and the hidden activation, none on the last.
absl::StatusOr<std::vector<Stage>> DenseStages(const ModelSpec& spec) {
  std::vector<Stage> stages;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const DenseLayer& l = spec.layers[i];
    Stage s;
    s.op = Stage::Op::kDense;
    s.in = Shape{static_cast<int>(l.weight.cols()), 1, 1};
    s.out = Shape{static_cast<int>(l.weight.rows()), 1, 1};
    s.drop_rate = l.drop_rate;
    s.mask_layer = static_cast<uint32_t>(i);
    s.activation =
        i + 1 < spec.layers.size() ? spec.activation : Activation::kIdentity;
    s.weight = l.weight;
    s.bias = l.bias;
    s.multiply_adds = l.weight.size();
    auto kernel = DenseKernel::Create(l.weight, spec.precision);
    if (!kernel.ok()) return kernel.status();
    s.kernels.push_back(std::shared_ptr<const DenseKernel>(*std::move(kernel)));
    stages.push_back(std::move(s));
  }
  return stages;
}

absl::StatusOr<Shape> InputShape(const std::vector<int>& dims) {
  if (dims.size() == 1 && BoundedSize(dims[0], 1, 1) > 0) {
    return Shape{dims[0], 1, 1};
  }
  if (dims.size() == 3 && BoundedSize(dims[0], dims[1], dims[2]) > 0) {
    return Shape{dims[0], dims[1], dims[2]};
  }
  return MetadataError("input_shape",
                       absl::StrCat("expected [n] or [C, H, W] of positive "
                                    "sizes, at most 2^22 values, got [",
                                    absl::StrJoin(dims, ", "), "]"));
}

}  // namespace

absl::StatusOr<Model> Model::WithPrecision(Precision precision) const {
  if (precision == spec_.precision) return *this;
  ModelSpec spec = spec_;
  spec.precision = precision;
  return Create(std::move(spec));
}

absl::StatusOr<Model> Model::Create(ModelSpec spec) {
  if (!spec.graph.empty()) return CreateFromLayerList(std::move(spec));
  if (spec.layers.empty()) {
    return absl::InvalidArgumentError("model has no layers");
  }
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const DenseLayer& l = spec.layers[i];
    const std::string w = absl::StrCat("layers.", i, ".weight");
    const std::string b = absl::StrCat("layers.", i, ".bias");
    if (l.weight.rows() == 0 || l.weight.cols() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", w, "\" is empty"));
    }
    if (l.bias.size() != l.weight.rows()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", b, "\" has ", l.bias.size(), " values but \"", w,
          "\" has ", l.weight.rows(), " outputs"));
    }
    if (i > 0 && l.weight.cols() != spec.layers[i - 1].weight.rows()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", w, "\" takes ", l.weight.cols(), " inputs but layer ",
          i - 1, " has ", spec.layers[i - 1].weight.rows(), " outputs"));
    }
    if (!AllFinite(l.weight)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", w, "\" holds a non-finite value"));
    }
    if (!l.bias.allFinite()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", b, "\" holds a non-finite value"));
    }
    if (!(l.drop_rate >= 0.0f && l.drop_rate < 1.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata \"dropout\": rate ", l.drop_rate, " of layer ",
                       i, " is outside [0, 1)"));
    }
  }
  const int in = static_cast<int>(spec.layers.front().weight.cols());
  spec.input_shape = {in};
  MCDROP_ASSIGN_OR_RETURN(std::vector<Stage> stages, DenseStages(spec));
  return Finish(std::move(spec), std::move(stages));
}

absl::StatusOr<Model> Model::CreateFromLayerList(ModelSpec spec) {
  if (!spec.layers.empty()) {
    return absl::InvalidArgumentError(
        "a model has either dense layers (v1) or a layer list (v2), not both");
  }
  MCDROP_ASSIGN_OR_RETURN(Shape input, InputShape(spec.input_shape));
  MCDROP_ASSIGN_OR_RETURN(std::vector<Stage> stages,
                          CompileStages(spec.graph, input, spec.precision));
  return Finish(std::move(spec), std::move(stages));
}

namespace {

absl::Status CheckCalibration(const ModelSpec& spec, int outputs) {
  if (!spec.calibration) return absl::OkStatus();
  const Calibration& c = *spec.calibration;
  const bool regression = spec.task == Task::kRegression;
  if (regression == IsClassificationScore(c.score)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata \"calibration\": score ", ConformalScoreName(c.score),
        " is not for ", TaskName(spec.task),
        regression ? " (normalized_residual is)" : " (lac or aps are)"));
  }
  MCDROP_RETURN_IF_ERROR(ValidateCalibration(c));
  const size_t lists = regression ? static_cast<size_t>(outputs) : 1;
  if (c.scores.size() != lists) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata \"calibration\": ", c.scores.size(),
                     " score lists, the model needs ", lists));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Model> Model::Finish(ModelSpec spec, std::vector<Stage> stages) {
  const Shape input = *InputShape(spec.input_shape);
  const int in = static_cast<int>(input.size());
  const int out = static_cast<int>(stages.back().out.size());
  // Images may be standardised per channel ([C] vectors) or per value.
  const int mean_size =
      spec.input_mean.size() == input.c && !input.flat() ? input.c : in;
  if ((spec.input_mean.size() == 0) != (spec.input_std.size() == 0)) {
    return absl::InvalidArgumentError(
        "input_mean and input_std must be given together");
  }
  if ((spec.output_mean.size() == 0) != (spec.output_std.size() == 0)) {
    return absl::InvalidArgumentError(
        "output_mean and output_std must be given together");
  }
  MCDROP_RETURN_IF_ERROR(
      CheckVector(spec.input_mean, mean_size, "input_mean", false));
  MCDROP_RETURN_IF_ERROR(
      CheckVector(spec.input_std, mean_size, "input_std", true));
  MCDROP_RETURN_IF_ERROR(
      CheckVector(spec.output_mean, out, "output_mean", false));
  MCDROP_RETURN_IF_ERROR(CheckVector(spec.output_std, out, "output_std", true));
  if (spec.task == Task::kRegression) {
    if (!(std::isfinite(spec.tau) && spec.tau > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata \"tau\": a regression model needs a finite tau > 0, got ",
          spec.tau));
    }
  } else {
    if (spec.output_mean.size() != 0) {
      return absl::InvalidArgumentError(
          "a classification model cannot have output_mean / output_std");
    }
    if (out < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a classification model needs at least 2 outputs, has ", out));
    }
  }
  if (spec.default_samples < 0) {
    return absl::InvalidArgumentError(
        "metadata \"default_samples\" must be >= 0");
  }
  if (!(spec.target_standard_error >= 0) ||
      !(spec.target_relative_error >= 0) ||
      !std::isfinite(spec.target_standard_error) ||
      !std::isfinite(spec.target_relative_error)) {
    return absl::InvalidArgumentError(
        "metadata \"target_standard_error\" and \"target_relative_error\" "
        "must be finite and >= 0");
  }
  MCDROP_RETURN_IF_ERROR(CheckCalibration(spec, out));
  Model model(std::move(spec));
  model.input_shape_ = input;
  model.first_stochastic_layer_ = static_cast<int>(stages.size());
  for (size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].drop_rate > 0.0f) {
      model.first_stochastic_layer_ = static_cast<int>(i);
      break;
    }
  }
  model.stages_ = std::make_shared<const std::vector<Stage>>(std::move(stages));
  const std::vector<int> widths = model.widths();
  model.max_width_ = *std::max_element(widths.begin(), widths.end());
  return model;
}

namespace {

// Format v1: layers.{i}.weight / bias, "activation" and "dropout".
absl::Status ReadDenseStack(const Safetensors& st, ModelSpec* out) {
  ModelSpec& spec = *out;
  const auto& meta = st.metadata();
  auto get = [&](const std::string& key) -> const std::string* {
    auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  const std::string* activation = get("activation");
  if (activation == nullptr) return MetadataError("activation", "missing");
  auto parsed_act = ParseActivation(*activation);
  if (!parsed_act.ok()) {
    return MetadataError("activation", parsed_act.status().message());
  }
  spec.activation = *parsed_act;

  // Tensor names: layers.{i}.weight, layers.{i}.bias and the standardisation.
  static const std::set<std::string> kStandardisation = {
      "input_mean", "input_std", "output_mean", "output_std"};
  int num_layers = 0;
  for (const auto& [name, info] : st.tensors()) {
    if (kStandardisation.count(name)) continue;
    absl::string_view rest = name;
    int index = -1;
    if (absl::ConsumePrefix(&rest, "layers.")) {
      const size_t dot = rest.find('.');
      const absl::string_view kind =
          dot == absl::string_view::npos ? "" : rest.substr(dot + 1);
      if (dot != absl::string_view::npos &&
          (kind == "weight" || kind == "bias") &&
          absl::SimpleAtoi(rest.substr(0, dot), &index) && index >= 0 &&
          index < 100000 && absl::StrCat(index) == rest.substr(0, dot)) {
        num_layers = std::max(num_layers, index + 1);
        continue;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name,
        "\" is not part of the format (expected layers.{i}.weight, "
        "layers.{i}.bias, input_mean, input_std, output_mean, output_std)"));
  }
  if (num_layers == 0) {
    return absl::InvalidArgumentError(
        "no tensor \"layers.0.weight\": model has no layers");
  }

  for (int i = 0; i < num_layers; ++i) {
    const std::string wname = absl::StrCat("layers.", i, ".weight");
    const std::string bname = absl::StrCat("layers.", i, ".bias");
    if (!st.tensors().count(wname)) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor \"", wname, "\""));
    }
    if (!st.tensors().count(bname)) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor \"", bname, "\""));
    }
    std::vector<int64_t> shape;
    MCDROP_ASSIGN_OR_RETURN(std::vector<float> w,
                            ReadTensor(st, wname, &shape));
    if (shape.size() != 2 || shape[0] == 0 || shape[1] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", wname,
                       "\" must have shape [out, in] with out, in > 0; has [",
                       absl::StrJoin(shape, ", "), "]"));
    }
    DenseLayer layer;
    layer.weight = Eigen::Map<RowMajorMatrixXf>(w.data(), shape[0], shape[1]);
    MCDROP_ASSIGN_OR_RETURN(layer.bias, ReadVector(st, bname));
    spec.layers.push_back(std::move(layer));
  }

  const std::string* dropout = get("dropout");
  if (dropout == nullptr) return MetadataError("dropout", "missing");
  MCDROP_ASSIGN_OR_RETURN(std::vector<double> rates,
                          ParseDropout(*dropout, num_layers));
  for (int i = 0; i < num_layers; ++i) {
    if (!(rates[i] >= 0.0 && rates[i] < 1.0)) {
      return MetadataError("dropout",
                           absl::StrCat("rate ", rates[i], " of layer ", i,
                                        " is outside [0, 1)"));
    }
    spec.layers[i].drop_rate = static_cast<float>(rates[i]);
  }
  return absl::OkStatus();
}

// The tensors a layer of kind `kind` may have, and which are required.
struct LayerTensor {
  const char* suffix;
  bool required;
};
std::vector<LayerTensor> TensorsOf(LayerKind kind) {
  switch (kind) {
    case LayerKind::kDense:
    case LayerKind::kConv2d:
      return {{"weight", true}, {"bias", false}};
    case LayerKind::kBatchNorm:
      return {{"weight", true},
              {"bias", true},
              {"running_mean", true},
              {"running_var", true}};
    default:
      return {};
  }
}

absl::StatusOr<std::vector<int>> ParseIntList(const std::string& key,
                                              const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  std::vector<int> out;
  if (j.is_array() && j.size() <= 8) {
    for (const auto& v : j) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 ||
          v.get<int64_t>() > (1 << 24)) {
        break;
      }
      out.push_back(static_cast<int>(v.get<int64_t>()));
    }
    if (out.size() == j.size()) return out;
  }
  return MetadataError(key, absl::StrCat("expected a JSON list of positive "
                                         "integers, got \"",
                                         text, "\""));
}

// Format v2: "input_shape", the "layers" list and layers.{i}.{tensor}.
absl::Status ReadLayerList(const Safetensors& st, ModelSpec* spec) {
  const auto& meta = st.metadata();
  auto shape_it = meta.find("input_shape");
  if (shape_it == meta.end()) {
    return MetadataError("input_shape", "missing (e.g. \"[1, 28, 28]\")");
  }
  MCDROP_ASSIGN_OR_RETURN(spec->input_shape,
                          ParseIntList("input_shape", shape_it->second));
  auto layers_it = meta.find("layers");
  if (layers_it == meta.end()) return MetadataError("layers", "missing");
  MCDROP_ASSIGN_OR_RETURN(spec->graph, ParseLayerList(layers_it->second));
  std::set<std::string> used = {"input_mean", "input_std", "output_mean",
                                "output_std"};
  for (size_t i = 0; i < spec->graph.size(); ++i) {
    LayerDef& l = spec->graph[i];
    for (const LayerTensor& t : TensorsOf(l.kind)) {
      const std::string name = absl::StrCat("layers.", i, ".", t.suffix);
      if (!st.tensors().count(name)) {
        if (t.required) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", i, " (", LayerKindName(l.kind),
                           "): missing tensor \"", name, "\""));
        }
        continue;
      }
      used.insert(name);
      std::vector<int64_t> shape;
      MCDROP_ASSIGN_OR_RETURN(std::vector<float> v,
                              ReadTensor(st, name, &shape));
      const std::string suffix = t.suffix;
      if (suffix == "weight" && l.kind != LayerKind::kBatchNorm) {
        const size_t rank = l.kind == LayerKind::kDense ? 2 : 4;
        bool ok = shape.size() == rank;
        for (int64_t d : shape) ok = ok && d > 0;
        if (!ok) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor \"", name, "\" must have shape ",
              rank == 2 ? "[out, in]"
                        : "[out_channels, in_channels / groups, "
                          "kernel_h, kernel_w]",
              " of positive sizes; has [", absl::StrJoin(shape, ", "), "]"));
        }
        const int64_t cols = static_cast<int64_t>(v.size()) / shape[0];
        l.weight = Eigen::Map<RowMajorMatrixXf>(v.data(), shape[0], cols);
        l.out = static_cast<int>(shape[0]);
        if (rank == 4) {
          const std::array<int, 2> k = {static_cast<int>(shape[2]),
                                        static_cast<int>(shape[3])};
          if (l.kernel != std::array<int, 2>{0, 0} && l.kernel != k) {
            return absl::InvalidArgumentError(absl::StrCat(
                "layer ", i, " (conv2d): kernel_size [", l.kernel[0], ", ",
                l.kernel[1], "] disagrees with tensor \"", name, "\" [",
                absl::StrJoin(shape, ", "), "]"));
          }
          l.kernel = k;
        }
        continue;
      }
      if (shape.size() != 1 || shape[0] == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", name, "\" must have rank 1 and values, has shape [",
            absl::StrJoin(shape, ", "), "]"));
      }
      Eigen::VectorXf vec = Eigen::Map<Eigen::VectorXf>(
          v.data(), static_cast<Eigen::Index>(v.size()));
      if (l.kind == LayerKind::kBatchNorm) {
        if (suffix == "weight") l.gamma = std::move(vec);
        if (suffix == "bias") l.bias = std::move(vec);
        if (suffix == "running_mean") l.mean = std::move(vec);
        if (suffix == "running_var") l.var = std::move(vec);
      } else {
        l.bias = std::move(vec);
      }
    }
    if ((l.kind == LayerKind::kDense || l.kind == LayerKind::kConv2d) &&
        l.bias.size() == 0) {
      l.bias = Eigen::VectorXf::Zero(l.out);
    }
  }
  for (const auto& [name, info] : st.tensors()) {
    if (!used.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name,
          "\" belongs to no layer of the list (a layer's tensors are "
          "layers.{i}.weight, bias, running_mean, running_var)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Model> FromSafetensors(const Safetensors& st) {
  const auto& meta = st.metadata();
  auto get = [&](const std::string& key) -> const std::string* {
    auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  ModelSpec spec;

  const std::string* format = get("format");
  if (format == nullptr) {
    return MetadataError(
        "format", absl::StrCat("missing (expected \"", kModelFormat, "\")"));
  }
  if (*format != kModelFormat && *format != kModelFormatV2) {
    return MetadataError(
        "format",
        absl::StrCat("is \"", *format, "\", this build reads \"", kModelFormat,
                     "\" and \"", kModelFormatV2, "\""));
  }
  const std::string* task = get("task");
  if (task == nullptr) return MetadataError("task", "missing");
  auto parsed_task = ParseTask(*task);
  if (!parsed_task.ok())
    return MetadataError("task", parsed_task.status().message());
  spec.task = *parsed_task;

  if (*format == kModelFormat) {
    MCDROP_RETURN_IF_ERROR(ReadDenseStack(st, &spec));
  } else {
    for (const char* v1_key : {"activation", "dropout"}) {
      if (get(v1_key) != nullptr) {
        return MetadataError(v1_key,
                             "belongs to format v1; a v2 file lists its "
                             "activations and dropout in \"layers\"");
      }
    }
    MCDROP_RETURN_IF_ERROR(ReadLayerList(st, &spec));
  }

  for (const char* name :
       {"input_mean", "input_std", "output_mean", "output_std"}) {
    if (!st.tensors().count(name)) continue;
    MCDROP_ASSIGN_OR_RETURN(Eigen::VectorXf v, ReadVector(st, name));
    const std::string n = name;
    if (n == "input_mean") spec.input_mean = std::move(v);
    if (n == "input_std") spec.input_std = std::move(v);
    if (n == "output_mean") spec.output_mean = std::move(v);
    if (n == "output_std") spec.output_std = std::move(v);
  }

  if (const std::string* tau = get("tau")) {
    if (!absl::SimpleAtod(*tau, &spec.tau)) {
      return MetadataError("tau",
                           absl::StrCat("\"", *tau, "\" is not a number"));
    }
  } else if (spec.task == Task::kRegression) {
    return MetadataError("tau", "missing (a regression model needs tau > 0)");
  }
  if (const std::string* t = get("default_samples")) {
    if (!absl::SimpleAtoi(*t, &spec.default_samples) ||
        spec.default_samples < 0) {
      return MetadataError("default_samples",
                           absl::StrCat("\"", *t, "\" is not an integer >= 0"));
    }
  }
  for (auto [key, field] :
       {std::pair<const char*, double*>{"target_standard_error",
                                        &spec.target_standard_error},
        {"target_relative_error", &spec.target_relative_error}}) {
    if (const std::string* t = get(key)) {
      if (!absl::SimpleAtod(*t, field) || !std::isfinite(*field) ||
          *field < 0) {
        return MetadataError(
            key, absl::StrCat("\"", *t, "\" is not a finite number >= 0"));
      }
    }
  }
  if (const std::string* p = get("precision")) {
    auto precision = ParsePrecision(*p);
    if (!precision.ok()) {
      return MetadataError("precision",
                           std::string(precision.status().message()));
    }
    spec.precision = *precision;
  }
  if (const std::string* c = get("calibration")) {
    auto calibration = ParseCalibration(*c);
    if (!calibration.ok()) return calibration.status();
    spec.calibration = *std::move(calibration);
  }
  if (const std::string* n = get("name")) spec.name = *n;
  if (const std::string* d = get("description")) spec.description = *d;
  static const std::set<std::string> kKnown = {"format",
                                               "task",
                                               "activation",
                                               "dropout",
                                               "tau",
                                               "default_samples",
                                               "name",
                                               "description",
                                               "precision",
                                               "input_shape",
                                               "layers",
                                               "target_standard_error",
                                               "target_relative_error",
                                               "calibration"};
  for (const auto& [k, v] : meta) {
    if (!kKnown.count(k)) spec.extra_metadata[k] = v;
  }
  return Model::Create(std::move(spec));
}

}  // namespace

absl::StatusOr<Model> Model::Load(const std::string& path) {
  MCDROP_ASSIGN_OR_RETURN(Safetensors st, Safetensors::ReadFile(path));
  auto model = FromSafetensors(st);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat(path, ": ", model.status().message()));
  }
  return model;
}

absl::StatusOr<Model> Model::FromBytes(std::string bytes) {
  MCDROP_ASSIGN_OR_RETURN(Safetensors st, Safetensors::Parse(std::move(bytes)));
  return FromSafetensors(st);
}

absl::StatusOr<std::string> Model::ToBytes() const {
  std::vector<TensorToWrite> tensors;
  auto vec = [](const Eigen::VectorXf& v) {
    return std::vector<float>(v.data(), v.data() + v.size());
  };
  for (size_t i = 0; i < spec_.graph.size(); ++i) {
    const LayerDef& l = spec_.graph[i];
    const std::string prefix = absl::StrCat("layers.", i, ".");
    if (l.kind == LayerKind::kDense || l.kind == LayerKind::kConv2d) {
      RowMajorMatrixXf w = l.weight;
      std::vector<int64_t> shape = {w.rows(), w.cols()};
      if (l.kind == LayerKind::kConv2d) {
        const int64_t area = static_cast<int64_t>(l.kernel[0]) * l.kernel[1];
        shape = {w.rows(), w.cols() / area, l.kernel[0], l.kernel[1]};
      }
      tensors.push_back({prefix + "weight", shape,
                         std::vector<float>(w.data(), w.data() + w.size())});
      tensors.push_back({prefix + "bias", {l.bias.size()}, vec(l.bias)});
    } else if (l.kind == LayerKind::kBatchNorm) {
      tensors.push_back({prefix + "weight", {l.gamma.size()}, vec(l.gamma)});
      tensors.push_back({prefix + "bias", {l.bias.size()}, vec(l.bias)});
      tensors.push_back(
          {prefix + "running_mean", {l.mean.size()}, vec(l.mean)});
      tensors.push_back({prefix + "running_var", {l.var.size()}, vec(l.var)});
    }
  }
  for (size_t i = 0; i < spec_.layers.size(); ++i) {
    const DenseLayer& l = spec_.layers[i];
    RowMajorMatrixXf w = l.weight;
    tensors.push_back({absl::StrCat("layers.", i, ".weight"),
                       {w.rows(), w.cols()},
                       std::vector<float>(w.data(), w.data() + w.size())});
    tensors.push_back(
        {absl::StrCat("layers.", i, ".bias"), {l.bias.size()}, vec(l.bias)});
  }
  if (spec_.input_mean.size()) {
    tensors.push_back(
        {"input_mean", {spec_.input_mean.size()}, vec(spec_.input_mean)});
    tensors.push_back(
        {"input_std", {spec_.input_std.size()}, vec(spec_.input_std)});
  }
  if (spec_.output_mean.size()) {
    tensors.push_back(
        {"output_mean", {spec_.output_mean.size()}, vec(spec_.output_mean)});
    tensors.push_back(
        {"output_std", {spec_.output_std.size()}, vec(spec_.output_std)});
  }
  std::map<std::string, std::string> meta = spec_.extra_metadata;
  meta["task"] = std::string(TaskName(spec_.task));
  if (has_layer_list()) {
    meta["format"] = std::string(kModelFormatV2);
    meta["input_shape"] =
        absl::StrCat("[", absl::StrJoin(spec_.input_shape, ", "), "]");
    meta["layers"] = LayerListJson(spec_.graph);
  } else {
    meta["format"] = std::string(kModelFormat);
    meta["activation"] = std::string(ActivationName(spec_.activation));
    std::vector<std::string> rates;
    for (const DenseLayer& l : spec_.layers)
      rates.push_back(Shortest(l.drop_rate));
    meta["dropout"] = absl::StrCat("[", absl::StrJoin(rates, ", "), "]");
  }
  if (spec_.task == Task::kRegression || spec_.tau > 0)
    meta["tau"] = Shortest(spec_.tau);
  if (spec_.default_samples > 0)
    meta["default_samples"] = absl::StrCat(spec_.default_samples);
  if (spec_.target_standard_error > 0)
    meta["target_standard_error"] = Shortest(spec_.target_standard_error);
  if (spec_.target_relative_error > 0)
    meta["target_relative_error"] = Shortest(spec_.target_relative_error);
  if (spec_.precision != Precision::kF32)
    meta["precision"] = std::string(PrecisionName(spec_.precision));
  if (spec_.calibration)
    meta["calibration"] = CalibrationToJson(*spec_.calibration);
  if (!spec_.name.empty()) meta["name"] = spec_.name;
  if (!spec_.description.empty()) meta["description"] = spec_.description;
  return SerializeSafetensors(tensors, meta);
}

absl::Status Model::Save(const std::string& path) const {
  MCDROP_ASSIGN_OR_RETURN(std::string bytes, ToBytes());
  return WriteFileAtomically(path, bytes);
}

std::vector<int> Model::widths() const {
  std::vector<int> w = {input_size()};
  for (const Stage& s : stages()) w.push_back(static_cast<int>(s.out.size()));
  return w;
}

int64_t Model::MultiplyAdds(int from) const {
  int64_t n = 0;
  for (int i = from; i < num_stages(); ++i) n += stages()[i].multiply_adds;
  return n;
}

}  // namespace mcdrop
