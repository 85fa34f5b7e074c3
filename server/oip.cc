// Copyright 2026 The mcdrop Authors.

#include "server/oip.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mcdrop::server {
namespace {

using inference::InferParameter;
using inference::ModelInferRequest;
using inference::ModelInferResponse;

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

// Request text quoted in a message: at most 64 bytes, escaped (messages are
// logged, and must not carry a client's newlines or megabytes).
std::string Q(absl::string_view text) {
  std::string out = absl::CHexEscape(text.substr(0, 64));
  return text.size() > 64 ? out + "..." : out;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const int exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa ? NAN : INFINITY;
  } else {
    value = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits |= sign;
  std::memcpy(&value, &bits, 4);
  return value;
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

// Bytes per element of an accepted input datatype, or 0.
int InputElementBytes(const std::string& datatype) {
  if (datatype == "FP32") return 4;
  if (datatype == "FP64") return 8;
  if (datatype == "FP16" || datatype == "BF16") return 2;
  return 0;
}

// The input's values as floats, from raw bytes (little-endian).
absl::Status RawToFloats(const std::string& datatype, const std::string& raw,
                         int64_t count,
                         google::protobuf::RepeatedField<float>* out) {
  const int bytes = InputElementBytes(datatype);
  if (static_cast<int64_t>(raw.size()) != count * bytes) {
    return Invalid(absl::StrCat("raw_input_contents holds ", raw.size(),
                                " bytes; shape and ", datatype, " need ",
                                count * bytes));
  }
  out->Resize(static_cast<int>(count), 0.0f);
  for (int64_t i = 0; i < count; ++i) {
    const char* p = raw.data() + i * bytes;
    float v;
    if (bytes == 4) {
      std::memcpy(&v, p, 4);
    } else if (bytes == 8) {
      double d;
      std::memcpy(&d, p, 8);
      v = static_cast<float>(d);
    } else {
      uint16_t h;
      std::memcpy(&h, p, 2);
      v = datatype == "FP16" ? HalfToFloat(h) : Bf16ToFloat(h);
    }
    out->Set(static_cast<int>(i), v);
  }
  return absl::OkStatus();
}

absl::Status TypedToFloats(const ModelInferRequest::InferInputTensor& input,
                           int64_t count,
                           google::protobuf::RepeatedField<float>* out) {
  const auto& c = input.contents();
  if (input.datatype() == "FP32") {
    if (c.fp32_contents_size() != count) {
      return Invalid(absl::StrCat("contents.fp32_contents holds ",
                                  c.fp32_contents_size(),
                                  " values; the shape needs ", count));
    }
    *out = c.fp32_contents();
    return absl::OkStatus();
  }
  if (input.datatype() == "FP64") {
    if (c.fp64_contents_size() != count) {
      return Invalid(absl::StrCat("contents.fp64_contents holds ",
                                  c.fp64_contents_size(),
                                  " values; the shape needs ", count));
    }
    for (double d : c.fp64_contents()) out->Add(static_cast<float>(d));
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat(Q(input.datatype()),
                              " inputs must come as raw_input_contents (the "
                              "protocol has no typed field for them)"));
}

absl::Status ReadInput(const ModelInferRequest& request,
                       mcdrop::v1::PredictRequest* predict) {
  if (request.inputs_size() != 1) {
    return Invalid(absl::StrCat("expected exactly one input tensor, \"",
                                kOipInputName, "\"; got ",
                                request.inputs_size()));
  }
  const auto& input = request.inputs(0);
  if (input.name() != kOipInputName) {
    return Invalid(absl::StrCat("unknown input tensor \"", Q(input.name()),
                                "\" (this model's input is \"", kOipInputName,
                                "\")"));
  }
  if (InputElementBytes(input.datatype()) == 0) {
    return Invalid(absl::StrCat("input datatype ", Q(input.datatype()),
                                " is not supported (FP32, FP64, FP16, BF16)"));
  }
  int64_t count = 1;
  for (int64_t d : input.shape()) {
    if (d < 0 || (d > 0 && count > (int64_t{1} << 31) / d)) {
      return Invalid(absl::StrCat("input shape [",
                                  absl::StrJoin(input.shape(), ", "),
                                  "] is negative or too large"));
    }
    count *= d;
    predict->add_shape(d);
  }
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && input.has_contents()) {
    return Invalid(
        "give the input in contents or in raw_input_contents, not both");
  }
  if (raw && request.raw_input_contents_size() != 1) {
    return Invalid("raw_input_contents must hold one entry per input (1)");
  }
  return raw ? RawToFloats(input.datatype(), request.raw_input_contents(0),
                           count, predict->mutable_inputs())
             : TypedToFloats(input, count, predict->mutable_inputs());
}

absl::StatusOr<int64_t> IntegerParameter(const std::string& name,
                                         const InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case InferParameter::kInt64Param:
      return p.int64_param();
    case InferParameter::kUint64Param:
      if (p.uint64_param() > static_cast<uint64_t>(INT64_MAX)) break;
      return static_cast<int64_t>(p.uint64_param());
    default:
      break;
  }
  return Invalid(absl::StrCat("parameter \"", Q(name),
                              "\" must be an int64_param or uint64_param"));
}

// A list of levels: one double_param, or a string_param "0.5, 0.9" (at most
// 16; the range is checked with the request).
absl::Status ReadLevels(const std::string& name, const InferParameter& p,
                        google::protobuf::RepeatedField<double>* levels) {
  if (p.parameter_choice_case() == InferParameter::kDoubleParam) {
    levels->Add(p.double_param());
    return absl::OkStatus();
  }
  if (p.parameter_choice_case() != InferParameter::kStringParam) {
    return Invalid(absl::StrCat("parameter \"", name,
                                "\" must be a double_param or a "
                                "string_param of comma-separated levels"));
  }
  int count = 0;
  for (absl::string_view part : absl::StrSplit(p.string_param(), ',')) {
    if (++count > 16) {
      return Invalid(
          absl::StrCat("parameter \"", name, "\": at most 16 levels"));
    }
    double level;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(part), &level)) {
      return Invalid(absl::StrCat("parameter \"", name, "\": \"", Q(part),
                                  "\" is not a number"));
    }
    levels->Add(level);
  }
  return absl::OkStatus();
}

absl::Status ReadParameter(const std::string& name, const InferParameter& p,
                           OipCall* call) {
  mcdrop::v1::PredictRequest* predict = &call->predict;
  if (name == "timeout") {
    auto v = IntegerParameter(name, p);
    if (!v.ok()) return v.status();
    if (*v <= 0) {
      return Invalid(absl::StrCat(
          "parameter \"timeout\" (microseconds) must be positive, got ", *v));
    }
    call->timeout = absl::Microseconds(*v);
  } else if (name == "samples") {
    auto v = IntegerParameter(name, p);
    if (!v.ok()) return v.status();
    if (*v < 0 || *v > INT32_MAX) {
      return Invalid(absl::StrCat("parameter \"samples\" must be in [0, ",
                                  INT32_MAX, "], got ", *v));
    }
    predict->set_samples(static_cast<int32_t>(*v));
  } else if (name == "seed") {
    if (p.parameter_choice_case() == InferParameter::kUint64Param) {
      predict->set_seed(p.uint64_param());
    } else {
      auto v = IntegerParameter(name, p);
      if (!v.ok()) return v.status();
      predict->set_seed(static_cast<uint64_t>(*v));
    }
  } else if (name == "mode") {
    if (p.parameter_choice_case() != InferParameter::kStringParam) {
      return Invalid("parameter \"mode\" must be a string_param");
    }
    if (p.string_param() == "monte_carlo") {
      predict->set_mode(mcdrop::v1::MONTE_CARLO);
    } else if (p.string_param() == "deterministic") {
      predict->set_mode(mcdrop::v1::DETERMINISTIC);
    } else {
      return Invalid(
          absl::StrCat("parameter \"mode\" is \"", Q(p.string_param()),
                       "\" (expected monte_carlo or deterministic)"));
    }
  } else if (name == "target_standard_error" ||
             name == "target_relative_error") {
    double v;
    if (p.parameter_choice_case() == InferParameter::kDoubleParam) {
      v = p.double_param();
    } else if (p.parameter_choice_case() == InferParameter::kInt64Param) {
      v = static_cast<double>(p.int64_param());
    } else {
      return Invalid(
          absl::StrCat("parameter \"", name, "\" must be a double_param"));
    }
    auto* target = predict->mutable_target();
    if (name == "target_standard_error") {
      target->set_standard_error(v);
    } else {
      target->set_relative_error(v);
    }
  } else if (name == "min_samples" || name == "max_samples") {
    auto v = IntegerParameter(name, p);
    if (!v.ok()) return v.status();
    if (*v < 0 || *v > INT32_MAX) {
      return Invalid(absl::StrCat("parameter \"", name, "\" must be in [0, ",
                                  INT32_MAX, "], got ", *v));
    }
    auto* target = predict->mutable_target();
    if (name == "min_samples") {
      target->set_min_samples(static_cast<int32_t>(*v));
    } else {
      target->set_max_samples(static_cast<int32_t>(*v));
    }
  } else if (name == "predictive_draws") {
    if (p.parameter_choice_case() != InferParameter::kBoolParam) {
      return Invalid("parameter \"predictive_draws\" must be a bool_param");
    }
    predict->set_predictive_draws(p.bool_param());
  } else if (name == "exclude_noise") {
    if (p.parameter_choice_case() != InferParameter::kBoolParam) {
      return Invalid("parameter \"exclude_noise\" must be a bool_param");
    }
    predict->set_exclude_noise(p.bool_param());
  } else if (name == "interval_levels") {
    return ReadLevels(name, p, predict->mutable_interval_levels());
  } else if (name == "set_levels") {
    return ReadLevels(name, p, predict->mutable_set_levels());
  } else {
    return Invalid(absl::StrCat("unknown parameter \"", Q(name),
                                "\" (mcdrop takes samples, seed, mode, "
                                "exclude_noise, interval_levels, set_levels, "
                                "timeout, "
                                "predictive_draws, target_standard_error, "
                                "target_relative_error, min_samples, "
                                "max_samples)"));
  }
  return absl::OkStatus();
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  for (const std::string& x : v) {
    if (x == s) return true;
  }
  return false;
}

// Appends one output tensor with its raw bytes.
template <typename T>
void AddOutput(const std::string& name, const char* datatype,
               std::vector<int64_t> shape, const std::vector<T>& values,
               ModelInferResponse* response) {
  auto* out = response->add_outputs();
  out->set_name(name);
  out->set_datatype(datatype);
  for (int64_t d : shape) out->add_shape(d);
  response->add_raw_output_contents(std::string(
      reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
}

// [B, D, L]: the conformal interval bounds (ConformalQuantiles).
std::vector<double> ConformalBounds(const Model& model, const PredictPlan& plan,
                                    const Prediction& p, bool lower) {
  const std::vector<std::vector<double>> q = ConformalQuantiles(model, plan);
  std::vector<double> v;
  if (q.size() != static_cast<size_t>(p.outputs)) {  // settled before: none
    v.assign(static_cast<size_t>(p.rows) * p.outputs * p.levels,
             std::numeric_limits<double>::quiet_NaN());
    return v;
  }
  for (int r = 0; r < p.rows; ++r) {
    for (int d = 0; d < p.outputs; ++d) {
      const double std = std::sqrt(p.Variance(r, d));
      for (double qd : q[d])
        v.push_back(p.Mean(r, d) + (lower ? -qd : qd) * std);
    }
  }
  return v;
}

// [B, levels, classes]: 1 where the class is in the row's prediction set.
std::vector<uint8_t> SetMasks(const Model& model,
                              const mcdrop::v1::PredictRequest& request,
                              const PredictPlan& plan, const Prediction& p) {
  const int L = request.set_levels_size(), D = p.outputs;
  std::vector<uint8_t> mask(static_cast<size_t>(p.rows) * L * D, 0);
  if (!model.spec().calibration) return mask;  // refused before: no sets
  const Calibration& c = *model.spec().calibration;
  for (int r = 0; r < p.rows; ++r) {
    const auto probs =
        absl::MakeConstSpan(p.mean.data() + static_cast<size_t>(r) * D, D);
    for (int l = 0; l < L; ++l) {
      const double q = SetQuantile(model, plan, request.set_levels(l));
      for (int k : PredictionSet(c.score, probs, q))
        mask[(static_cast<size_t>(r) * L + l) * D + k] = 1;
    }
  }
  return mask;
}

// The samples as one [T, B, D] tensor: with a target, rows that stopped
// before the largest T are padded with NaN.
std::vector<float> SamplesTensor(const AdaptivePrediction& answer) {
  const Prediction& p = answer.prediction;
  if (answer.row_samples.empty()) return p.sample_values;
  const int64_t B = p.rows, D = p.outputs;
  std::vector<float> out(static_cast<size_t>(p.samples) * B * D,
                         std::numeric_limits<float>::quiet_NaN());
  for (int64_t r = 0; r < B; ++r) {
    const std::vector<float>& v = answer.row_samples[r];
    for (size_t i = 0; i < v.size(); ++i) {
      const int64_t t = static_cast<int64_t>(i) / D,
                    d = static_cast<int64_t>(i) % D;
      out[(t * B + r) * D + d] = v[i];
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> OipOutputNames(const Model& model) {
  const bool calibrated = model.spec().calibration.has_value();
  if (model.task() == Task::kClassification) {
    std::vector<std::string> names = {"probabilities",   "predicted_class",
                                      "entropy",         "mutual_information",
                                      "variation_ratio", "samples",
                                      "standard_error",  "samples_per_row"};
    if (calibrated) names.push_back("prediction_set");
    return names;
  }
  std::vector<std::string> names = {
      "mean",           "variance",       "std",
      "model_variance", "interval_lower", "interval_upper",
      "samples",        "standard_error", "samples_per_row"};
  if (calibrated) {
    names.push_back("conformal_lower");
    names.push_back("conformal_upper");
  }
  return names;
}

absl::StatusOr<OipCall> TranslateInferRequest(const ModelInferRequest& request,
                                              const Model& model) {
  OipCall call;
  call.predict.set_model(request.model_name());
  if (!request.model_version().empty()) {
    int64_t version;
    if (!absl::SimpleAtoi(request.model_version(), &version) || version < 1) {
      return Invalid(absl::StrCat("model_version \"",
                                  Q(request.model_version()),
                                  "\" is not a positive integer"));
    }
    call.predict.set_version(version);
  }
  if (absl::Status s = ReadInput(request, &call.predict); !s.ok()) return s;
  for (const auto& [name, p] : request.parameters()) {
    if (absl::Status s = ReadParameter(name, p, &call); !s.ok()) {
      return s;
    }
  }
  const std::vector<std::string> known = OipOutputNames(model);
  for (const auto& o : request.outputs()) {
    if (!Contains(known, o.name())) {
      return Invalid(absl::StrCat("unknown output \"", Q(o.name()),
                                  "\" (this model has ",
                                  absl::StrJoin(known, ", "), ")"));
    }
    if (Contains(call.outputs, o.name())) {
      return Invalid(absl::StrCat("output \"", Q(o.name()), "\" asked twice"));
    }
    call.outputs.push_back(o.name());
    call.outputs_named = true;
  }
  const bool intervals = call.predict.interval_levels_size() > 0;
  const bool conformal = intervals &&
                         call.predict.mode() == mcdrop::v1::MONTE_CARLO &&
                         !call.predict.exclude_noise();
  const bool target = call.predict.has_target();
  if (call.outputs.empty()) {
    for (const std::string& name : known) {
      if (name == "samples") continue;
      if (!intervals && absl::StartsWith(name, "interval_")) continue;
      if (!conformal && absl::StartsWith(name, "conformal_")) continue;
      if (name == "prediction_set" && call.predict.set_levels_size() == 0)
        continue;
      if (!target && (name == "standard_error" || name == "samples_per_row")) {
        continue;
      }
      call.outputs.push_back(name);
    }
  }
  if ((Contains(call.outputs, "interval_lower") ||
       Contains(call.outputs, "interval_upper")) &&
      !intervals) {
    return Invalid(
        "interval_lower / interval_upper need the parameter "
        "\"interval_levels\"");
  }
  if ((Contains(call.outputs, "conformal_lower") ||
       Contains(call.outputs, "conformal_upper")) &&
      !conformal) {
    return Invalid(
        "conformal_lower / conformal_upper need the parameter "
        "\"interval_levels\", MONTE_CARLO mode and the noise included");
  }
  if (Contains(call.outputs, "prediction_set") &&
      call.predict.set_levels_size() == 0) {
    return Invalid("prediction_set needs the parameter \"set_levels\"");
  }
  call.predict.set_return_samples(Contains(call.outputs, "samples"));
  return call;
}

absl::Status SettleConformalOutputs(const Model& model, const PredictPlan& plan,
                                    OipCall* call) {
  if (!ConformalQuantiles(model, plan).empty()) return absl::OkStatus();
  auto conformal = [](const std::string& name) {
    return absl::StartsWith(name, "conformal_");
  };
  if (!call->outputs_named) {
    call->outputs.erase(
        std::remove_if(call->outputs.begin(), call->outputs.end(), conformal),
        call->outputs.end());
    return absl::OkStatus();
  }
  for (const std::string& name : call->outputs) {
    if (conformal(name)) {
      return Invalid(absl::StrCat(
          name,
          " needs a calibrated regression model, interval_levels, "
          "monte_carlo mode with the noise included, and T at least "
          "the calibration's (",
          model.spec().calibration ? model.spec().calibration->samples : 0,
          ")"));
    }
  }
  return absl::OkStatus();
}

void FillInferResponse(const ModelInferRequest& request, const OipCall& call,
                       const ServedModel& served, const PredictPlan& plan,
                       const AdaptivePrediction& answer,
                       ModelInferResponse* response) {
  const Prediction& p = answer.prediction;
  response->set_model_name(served.name);
  response->set_model_version(absl::StrCat(served.version));
  response->set_id(request.id());
  (*response->mutable_parameters())["samples"].set_int64_param(p.samples);
  (*response->mutable_parameters())["seed"].set_uint64_param(plan.options.seed);
  const int64_t B = p.rows, D = p.outputs, L = p.levels;
  for (const std::string& name : call.outputs) {
    if (name == "mean" || name == "probabilities") {
      AddOutput(name, "FP64", {B, D}, p.mean, response);
    } else if (name == "variance") {
      AddOutput(name, "FP64", {B, D}, p.variance, response);
    } else if (name == "model_variance") {
      AddOutput(name, "FP64", {B, D}, p.model_variance, response);
    } else if (name == "std") {
      std::vector<double> std(p.variance.size());
      for (size_t i = 0; i < std.size(); ++i) std[i] = std::sqrt(p.variance[i]);
      AddOutput(name, "FP64", {B, D}, std, response);
    } else if (name == "standard_error") {
      AddOutput(name, "FP64", {B, D}, answer.standard_error, response);
    } else if (name == "samples_per_row") {
      std::vector<int64_t> t(answer.samples_per_row.begin(),
                             answer.samples_per_row.end());
      AddOutput(name, "INT64", {B}, t, response);
    } else if (name == "interval_lower" || name == "interval_upper") {
      std::vector<double> v;
      for (int64_t r = 0; r < B; ++r)
        for (int64_t d = 0; d < D; ++d)
          for (int64_t l = 0; l < L; ++l) {
            const IntervalBounds& b = p.Interval(r, d, l);
            v.push_back(name == "interval_lower" ? b.lower : b.upper);
          }
      AddOutput(name, "FP64", {B, D, L}, v, response);
    } else if (name == "conformal_lower" || name == "conformal_upper") {
      AddOutput(
          name, "FP64", {B, D, L},
          ConformalBounds(served.model, plan, p, name == "conformal_lower"),
          response);
    } else if (name == "prediction_set") {
      AddOutput(name, "BOOL",
                {B, static_cast<int64_t>(call.predict.set_levels_size()), D},
                SetMasks(served.model, call.predict, plan, p), response);
    } else if (name == "predicted_class") {
      std::vector<int64_t> c(p.predicted_class.begin(),
                             p.predicted_class.end());
      AddOutput(name, "INT64", {B}, c, response);
    } else if (name == "entropy") {
      AddOutput(name, "FP64", {B}, p.entropy, response);
    } else if (name == "mutual_information") {
      AddOutput(name, "FP64", {B}, p.mutual_information, response);
    } else if (name == "variation_ratio") {
      AddOutput(name, "FP64", {B}, p.variation_ratio, response);
    } else if (name == "samples") {
      AddOutput(name, "FP32", {p.samples, B, D}, SamplesTensor(answer),
                response);
    }
  }
}

void DescribeOipModel(const ServedModel& served,
                      const std::vector<int64_t>& versions,
                      inference::ModelMetadataResponse* response) {
  const Model& m = served.model;
  response->set_name(served.name);
  for (int64_t v : versions) response->add_versions(absl::StrCat(v));
  response->set_platform("mcdrop");
  auto* input = response->add_inputs();
  input->set_name(kOipInputName);
  input->set_datatype("FP32");
  input->add_shape(-1);
  const Shape shape = m.input_shape();
  input->add_shape(shape.c);
  if (!shape.flat()) {
    input->add_shape(shape.h);
    input->add_shape(shape.w);
  }
  const int64_t D = m.output_size();
  for (const std::string& name : OipOutputNames(m)) {
    auto* out = response->add_outputs();
    out->set_name(name);
    out->set_datatype(name == "predicted_class" || name == "samples_per_row"
                          ? "INT64"
                      : name == "samples"        ? "FP32"
                      : name == "prediction_set" ? "BOOL"
                                                 : "FP64");
    if (name == "samples") out->add_shape(-1);
    out->add_shape(-1);
    if (name == "prediction_set") out->add_shape(-1);  // levels
    const bool per_row = name == "predicted_class" || name == "entropy" ||
                         name == "mutual_information" ||
                         name == "variation_ratio" || name == "samples_per_row";
    if (!per_row) out->add_shape(D);
    if (absl::StartsWith(name, "interval_") ||
        absl::StartsWith(name, "conformal_")) {
      out->add_shape(-1);
    }
  }
}

}  // namespace mcdrop::server
