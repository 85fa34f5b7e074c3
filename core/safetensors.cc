// Copyright 2026 The mcdrop Authors.

#include "core/safetensors.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/file_util.h"

namespace mcdrop {
namespace {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE types");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mcdrop reads little-endian tensor data and needs a little-endian host"
#endif

using json = nlohmann::json;

absl::StatusOr<DType> ParseDType(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "F64") return DType::kF64;
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype \"", s, "\" (supported: F32, F16, BF16, F64)"));
}

absl::Status TensorError(const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("tensor \"", name, "\": ", what));
}

absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& name,
                                            const json& entry,
                                            uint64_t buffer_size) {
  if (!entry.is_object()) return TensorError(name, "entry is not an object");
  TensorInfo info;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return TensorError(name, "missing or non-string \"dtype\"");
  }
  auto dtype = ParseDType(dtype_it->get<std::string>());
  if (!dtype.ok()) return TensorError(name, dtype.status().message());
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return TensorError(name, "missing or non-array \"shape\"");
  }
  uint64_t elements = 1;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned() &&
        !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
      return TensorError(name,
                         "shape dimensions must be non-negative integers");
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (dim != 0 &&
         elements > std::numeric_limits<uint64_t>::max() / 8 / dim)) {
      return TensorError(name, "shape is too large");
    }
    elements *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() ||
      !(*off_it)[1].is_number_unsigned()) {
    return TensorError(
        name,
        "\"data_offsets\" must be two non-negative integers [begin, end]");
  }
  info.begin = (*off_it)[0].get<uint64_t>();
  info.end = (*off_it)[1].get<uint64_t>();
  if (info.begin > info.end) {
    return TensorError(name, absl::StrCat("data_offsets begin ", info.begin,
                                          " is after end ", info.end));
  }
  if (info.end > buffer_size) {
    return TensorError(
        name, absl::StrCat("data_offsets [", info.begin, ", ", info.end,
                           "] run past the end of the data buffer (",
                           buffer_size, " bytes)"));
  }
  const uint64_t expected = elements * DTypeSize(info.dtype);
  if (info.end - info.begin != expected) {
    return TensorError(
        name,
        absl::StrCat("data_offsets cover ", info.end - info.begin,
                     " bytes but shape [", absl::StrJoin(info.shape, ", "),
                     "] of ", DTypeName(info.dtype), " needs ", expected));
  }
  return info;
}

float ToFloat(DType dtype, const char* p) {
  switch (dtype) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::kF64: {
      double v;
      std::memcpy(&v, p, 8);
      return static_cast<float>(v);
    }
    case DType::kF16: {
      uint16_t bits;
      std::memcpy(&bits, p, 2);
      return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
    }
    case DType::kBF16: {
      uint16_t bits;
      std::memcpy(&bits, p, 2);
      return static_cast<float>(Eigen::numext::bit_cast<Eigen::bfloat16>(bits));
    }
  }
  return 0.0f;
}

}  // namespace

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kF64:
      return "F64";
  }
  return "?";
}

int DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kF64:
      return 8;
  }
  return 0;
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<Safetensors> Safetensors::Parse(std::string bytes) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "file is ", bytes.size(),
        " bytes, shorter than the 8-byte safetensors header length"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("header length ", header_len,
                                                   " exceeds the limit of ",
                                                   kMaxHeaderBytes, " bytes"));
  }
  if (header_len > bytes.size() - 8) {
    return absl::InvalidArgumentError(absl::StrCat("header length ", header_len,
                                                   " runs past the end of the ",
                                                   bytes.size(), "-byte file"));
  }

  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len,
                            /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::InvalidArgumentError("header is not valid JSON");
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError("header is not a JSON object");
  }

  Safetensors st;
  st.data_start_ = 8 + header_len;
  const uint64_t buffer_size = bytes.size() - st.data_start_;

  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) {
        return absl::InvalidArgumentError("__metadata__ is not an object");
      }
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "__metadata__ key \"", m.key(), "\" is not a string"));
        }
        st.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto info = ParseTensorEntry(it.key(), it.value(), buffer_size);
    if (!info.ok()) return info.status();
    if (info->begin != info->end) {
      ranges.push_back({{info->begin, info->end}, it.key()});
    }
    st.tensors_.emplace(it.key(), *std::move(info));
  }

  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first.first < ranges[i - 1].first.second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", ranges[i].second, "\": data_offsets overlap tensor \"",
          ranges[i - 1].second, "\""));
    }
  }
  st.bytes_ = std::move(bytes);
  return st;
}

absl::StatusOr<Safetensors> Safetensors::ReadFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("model file: ", bytes.status().message()));
  }
  auto st = Parse(*std::move(bytes));
  if (!st.ok()) {
    return absl::Status(st.status().code(),
                        absl::StrCat(path, ": ", st.status().message()));
  }
  return st;
}

absl::StatusOr<std::vector<float>> Safetensors::ReadAsFloat(
    const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("no tensor \"", name, "\""));
  }
  const TensorInfo& info = it->second;
  const int64_t n = info.num_elements();
  std::vector<float> out(n);
  const char* p = bytes_.data() + data_start_ + info.begin;
  const int size = DTypeSize(info.dtype);
  if (n == 0) {
    return out;
  } else if (info.dtype == DType::kF32) {
    std::memcpy(out.data(), p, n * sizeof(float));
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = ToFloat(info.dtype, p + i * size);
  }
  return out;
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const TensorToWrite& t : tensors) {
    if (t.name == "__metadata__" || !names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor name \"", t.name, "\" repeats or is reserved"));
    }
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (n != static_cast<int64_t>(t.values.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", t.name, "\": shape holds ", n,
                       " elements but ", t.values.size(), " values given"));
    }
    const uint64_t bytes = t.values.size() * sizeof(float);
    header[t.name] = {{"dtype", "F32"},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad the header with spaces so the data buffer starts 8-byte aligned, as
  // the reference writer does.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  std::string out(8, '\0');
  const uint64_t len = text.size();
  std::memcpy(out.data(), &len, 8);
  out += text;
  out.reserve(out.size() + offset);
  for (const TensorToWrite& t : tensors) {
    if (t.values.empty()) continue;
    out.append(reinterpret_cast<const char*>(t.values.data()),
               t.values.size() * sizeof(float));
  }
  return out;
}

}  // namespace mcdrop
