// Copyright 2026 The mcdrop Authors.
//
// Reading and writing the safetensors container format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header, then the raw little-endian tensor
// bytes. The JSON header maps tensor names to {"dtype", "shape",
// "data_offsets": [begin, end]} (offsets relative to the byte buffer after the
// header) and may hold a "__metadata__" object of string to string.
//
// This layer knows nothing of neural networks; model.h gives the tensors their
// meaning.

#ifndef MCDROP_CORE_SAFETENSORS_H_
#define MCDROP_CORE_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mcdrop {

// Element types this reader accepts. Every one is converted to float32 when
// read through Safetensors::ReadAsFloat.
enum class DType { kF32, kF16, kBF16, kF64 };

// "F32", "F16", "BF16", "F64".
absl::string_view DTypeName(DType dtype);
int DTypeSize(DType dtype);

struct TensorInfo {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offset into the data buffer
  uint64_t end = 0;    // one past the last byte
  int64_t num_elements() const;
};

// A parsed, validated safetensors file held in memory. Immutable after Parse;
// safe to read from several threads.
class Safetensors {
 public:
  // The largest JSON header accepted (the reference implementation uses the
  // same bound). Larger headers are rejected before any allocation.
  static constexpr uint64_t kMaxHeaderBytes = 100u << 20;

  // Parses `bytes` (the whole file). Checks: the length prefix fits the file
  // and kMaxHeaderBytes; the header is a JSON object; each tensor entry has a
  // known dtype, a shape of non-negative dimensions whose product does not
  // overflow, and data_offsets that lie within the buffer, match the shape's
  // byte size and overlap no other tensor; __metadata__ maps strings to
  // strings. Every error is InvalidArgument and names the tensor or key.
  static absl::StatusOr<Safetensors> Parse(std::string bytes);

  // Reads the file at `path` (ReadFileToString) and parses it. NotFound if it
  // cannot be opened, DataLoss if reading fails; Parse's errors prefixed with
  // the path.
  static absl::StatusOr<Safetensors> ReadFile(const std::string& path);

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }

  // Returns tensor `name` converted to float32, in row-major order.
  // NotFound if there is no such tensor.
  absl::StatusOr<std::vector<float>> ReadAsFloat(const std::string& name) const;

 private:
  std::string bytes_;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: float32 values in row-major order.
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Serialises `tensors` (as F32, in the given order) and `metadata` into the
// safetensors byte format. InvalidArgument if a shape does not match its
// values or a name repeats.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata);

}  // namespace mcdrop

#endif  // MCDROP_CORE_SAFETENSORS_H_
