// Copyright 2026 The mcdrop Authors.
//
// The products of a dense layer for a tile of (row, sample) columns, through
// oneDNN's matmul primitive: kernels generated at run time for the CPU the
// process runs on (AVX2, AVX-512, AVX512-BF16 or AMX), so one x86-64-v3
// binary runs at the speed of the machine it lands on. The weights are
// reordered once, when the kernel is made, into the layout the kernel
// prefers; primitives are made lazily per column count and kept.
//
// Threading: the engine's pool is the only scheduler. Apply runs the product
// on the calling thread alone (oneDNN's OpenMP runtime is pinned to one
// thread per calling thread).
//
// Determinism: each output column is a function of its input column alone,
// whatever the number of columns in the call, and the threads: the engine's
// seed contract rests on it (tested in dense_kernel_test.cc). Another CPU
// type may take another kernel path and round differently; SetMaxCpuIsa pins
// the instruction set for a fleet of mixed machines. Below AVX-512 the
// products run on Eigen's GEMM instead (see KernelPath).

#ifndef MCDROP_CORE_DENSE_KERNEL_H_
#define MCDROP_CORE_DENSE_KERNEL_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mcdrop {

// The arithmetic of a model's products. kBf16: weights and each layer's
// inputs rounded to bfloat16 (round to nearest even), products accumulated in
// f32; everything else (bias, activations, statistics) as in f32.
enum class Precision { kF32, kBf16 };
absl::string_view PrecisionName(Precision p);  // "f32", "bf16"
absl::StatusOr<Precision> ParsePrecision(absl::string_view name);

// x rounded to the nearest bfloat16 (ties to even), as bits; NaN stays NaN.
uint16_t ToBf16Bits(float x);
// x rounded to the nearest bfloat16, as a float.
float RoundToBf16(float x);

class DenseKernel {
 public:
  // A kernel for y = W x with W [out x in] (the model's layout). Internal
  // error if oneDNN cannot make one.
  static absl::StatusOr<std::unique_ptr<DenseKernel>> Create(
      const Eigen::MatrixXf& weight, Precision precision = Precision::kF32);
  ~DenseKernel();
  DenseKernel(const DenseKernel&) = delete;
  DenseKernel& operator=(const DenseKernel&) = delete;

  // y = W x for `cols` columns: `x` holds cols x in floats, column after
  // column (each column contiguous, as in a column-major [in x cols] Eigen
  // matrix), `y` receives cols x out floats the same way. Thread-safe.
  void Apply(const float* x, int64_t cols, float* y) const;

  int in() const { return in_; }
  int out() const { return out_; }
  Precision precision() const { return precision_; }

 private:
  struct State;
  DenseKernel(int in, int out, Precision precision,
              std::unique_ptr<State> state);
  int in_, out_;
  Precision precision_;
  std::unique_ptr<State> state_;
};

// What the products run on: "oneDNN avx512_core_bf16", or Eigen's GEMM
// compiled for x86-64-v3 when oneDNN's limit is below AVX-512 (its AVX2
// kernels' results depend on the column count, which would break the seed
// contract).
std::string KernelPath();

// The instruction set oneDNN dispatched to on this machine ("avx512_core",
// "avx2", ...), after any limit set below.
std::string KernelIsa();

// Limits the instruction set oneDNN may use: "avx2" (then the products run
// on Eigen's x86-64-v3 GEMM: the same bits on every x86-64-v3 CPU),
// "avx512_core", "avx512_core_bf16", "avx512_core_amx", "all", or "default"
// (avx512_core_bf16: what applies unless this is called or
// ONEDNN_MAX_CPU_ISA is set; AMX's bf16 kernels give results that depend on
// the number of columns, so a seed's answer would change with the tiling).
// Must be called before the first kernel is made; later calls may have no
// effect. InvalidArgument for an unknown name.
absl::Status SetMaxCpuIsa(absl::string_view isa);

}  // namespace mcdrop

#endif  // MCDROP_CORE_DENSE_KERNEL_H_
