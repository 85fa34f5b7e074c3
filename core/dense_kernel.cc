// Copyright 2026 The mcdrop Authors.

#include "core/dense_kernel.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

// libgomp's C interface (oneDNN's threading runtime here), declared rather
// than included: <omp.h> is not on every compiler's path (clang without
// libomp), and the library is linked by name.
extern "C" void omp_set_num_threads(int);

namespace mcdrop {
namespace {

using dnnl::memory;

// Whether the instruction set's limit is settled (SetMaxCpuIsa was called,
// or the default applied).
std::atomic<bool> isa_limited{false};

// Unless a limit was set (SetMaxCpuIsa, or ONEDNN_MAX_CPU_ISA in the
// environment), limits oneDNN to the default, before its first use: oneDNN
// fixes the limit the first time it reads it.
void ApplyDefaultIsaLimit() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (isa_limited.load() || std::getenv("ONEDNN_MAX_CPU_ISA") != nullptr ||
        std::getenv("DNNL_MAX_CPU_ISA") != nullptr) {
      return;
    }
    (void)SetMaxCpuIsa("default");
  });
}

dnnl::engine& CpuEngine() {
  ApplyDefaultIsaLimit();
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// oneDNN runs on the calling thread alone: the engine's pool owns the cores.
// Set once per thread (an OpenMP setting of the calling thread).
void PinLibraryThreads() {
  thread_local const bool pinned = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)pinned;
}

dnnl::stream& ThreadStream() {
  thread_local dnnl::stream stream(CpuEngine());
  return stream;
}

memory::desc Plain(memory::dim rows, memory::dim cols,
                   memory::data_type type = memory::data_type::f32) {
  return memory::desc({rows, cols}, type, memory::format_tag::ab);
}

memory::data_type SourceType(Precision p) {
  return p == Precision::kBf16 ? memory::data_type::bf16
                               : memory::data_type::f32;
}

// Per-thread buffer for a tile's inputs rounded to bf16.
template <typename T>
T* ThreadBuffer(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace

// Scratch memory for the kernels, one buffer per thread: with the library's
// default (global) scratchpad, two threads running kernels at once would
// share it.
void* ThreadScratch(size_t bytes) {
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

// oneDNN's AVX-512 brgemm kernels compute each output column from its own
// input column whatever the column count; its AVX2 kernels do not (found by
// pinned_isa_test: results changed with the tiling). Below AVX-512 the
// products go through Eigen's GEMM compiled for x86-64-v3, whose results
// are the same on every such CPU.
bool UseOneDnn() {
  ApplyDefaultIsaLimit();
  static const bool use =
      dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core &&
      dnnl::get_effective_cpu_isa() != dnnl::cpu_isa::all;
  return use;
}

struct DenseKernel::State {
  Eigen::MatrixXf eigen_weight;  // the Eigen path's copy
  memory::desc weights_md;       // the layout the kernels chose
  memory weights;                // reordered once
  struct Primitive {
    dnnl::matmul matmul;
    memory::desc scratch_md;
  };
  mutable std::mutex mu;
  mutable std::map<int64_t, Primitive> by_cols;  // guarded by mu

  Precision precision = Precision::kF32;

  dnnl::matmul::primitive_desc Describe(int64_t cols, int in, int out,
                                        const memory::desc& w) const {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(Plain(cols, in, SourceType(precision)), w,
                           Plain(cols, out)),
        attr, CpuEngine());
  }
};

DenseKernel::DenseKernel(int in, int out, Precision precision,
                         std::unique_ptr<State> state)
    : in_(in), out_(out), precision_(precision), state_(std::move(state)) {}

absl::string_view PrecisionName(Precision p) {
  return p == Precision::kBf16 ? "bf16" : "f32";
}

absl::StatusOr<Precision> ParsePrecision(absl::string_view name) {
  if (name == "f32") return Precision::kF32;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown precision \"", name, "\" (expected f32 or bf16)"));
}

uint16_t ToBf16Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float RoundToBf16(float x) {
  const uint32_t u = static_cast<uint32_t>(ToBf16Bits(x)) << 16;
  float out;
  std::memcpy(&out, &u, sizeof(out));
  return out;
}

DenseKernel::~DenseKernel() = default;

absl::StatusOr<std::unique_ptr<DenseKernel>> DenseKernel::Create(
    const Eigen::MatrixXf& weight, Precision precision) {
  const int in = static_cast<int>(weight.cols());
  const int out = static_cast<int>(weight.rows());
  try {
    PinLibraryThreads();
    auto state = std::make_unique<State>();
    state->precision = precision;
    if (!UseOneDnn()) {
      state->eigen_weight = weight;
      if (precision == Precision::kBf16) {
        state->eigen_weight = weight.unaryExpr(&RoundToBf16);
      }
      return std::unique_ptr<DenseKernel>(
          new DenseKernel(in, out, precision, std::move(state)));
    }
    // W [out x in] column-major is [in x out] row-major: matmul's weights
    // {K = in, N = out} in the plain layout.
    const memory::desc any({in, out}, SourceType(precision),
                           memory::format_tag::any);
    // The layout chosen does not depend on the column count (checked for
    // 1 to 4096 columns); 64 is a typical tile.
    state->weights_md = state->Describe(64, in, out, any).weights_desc();
    state->weights = memory(state->weights_md, CpuEngine());
    memory plain(Plain(in, out), CpuEngine(),
                 const_cast<float*>(weight.data()));
    dnnl::reorder(plain, state->weights)
        .execute(ThreadStream(), plain, state->weights);
    ThreadStream().wait();
    return std::unique_ptr<DenseKernel>(
        new DenseKernel(in, out, precision, std::move(state)));
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN cannot make a ", in, " -> ",
                                            out, " kernel: ", e.what()));
  }
}

void DenseKernel::Apply(const float* x, int64_t cols, float* y) const {
  const size_t n = static_cast<size_t>(cols) * in_;
  if (!UseOneDnn()) {
    // Eigen's blocked GEMM kernel, always (operator* picks GEMV or a lazy
    // product for some sizes, whose summation order differs).
    using Map = Eigen::Map<Eigen::MatrixXf>;
    if (precision_ == Precision::kBf16) {
      float* rounded = ThreadBuffer<float>(n);
      for (size_t i = 0; i < n; ++i) rounded[i] = RoundToBf16(x[i]);
      x = rounded;
    }
    const Eigen::Map<const Eigen::MatrixXf> in_map(x, in_, cols);
    Map out_map(y, out_, cols);
    out_map.setZero();
    Eigen::internal::generic_product_impl<
        Eigen::MatrixXf, Eigen::Map<const Eigen::MatrixXf>, Eigen::DenseShape,
        Eigen::DenseShape,
        Eigen::GemmProduct>::scaleAndAddTo(out_map, state_->eigen_weight,
                                           in_map, 1.0f);
    return;
  }
  PinLibraryThreads();
  const State::Primitive* primitive;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto it = state_->by_cols.find(cols);
    if (it == state_->by_cols.end()) {
      const auto pd = state_->Describe(cols, in_, out_, state_->weights_md);
      it = state_->by_cols
               .emplace(cols, State::Primitive{dnnl::matmul(pd),
                                               pd.scratchpad_desc()})
               .first;
    }
    primitive = &it->second;  // map nodes are stable
  }
  void* source = const_cast<float*>(x);
  if (precision_ == Precision::kBf16) {
    uint16_t* bits = ThreadBuffer<uint16_t>(n);
    for (size_t i = 0; i < n; ++i) bits[i] = ToBf16Bits(x[i]);
    source = bits;
  }
  memory src(Plain(cols, in_, SourceType(precision_)), CpuEngine(), source);
  memory dst(Plain(cols, out_), CpuEngine(), y);
  memory scratch(primitive->scratch_md, CpuEngine(),
                 ThreadScratch(primitive->scratch_md.get_size()));
  primitive->matmul.execute(ThreadStream(),
                            {{DNNL_ARG_SRC, src},
                             {DNNL_ARG_WEIGHTS, state_->weights},
                             {DNNL_ARG_DST, dst},
                             {DNNL_ARG_SCRATCHPAD, scratch}});
  ThreadStream().wait();
}

std::string KernelPath() {
  return UseOneDnn() ? "oneDNN " + KernelIsa()
                     : "Eigen x86-64-v3 (oneDNN would use " + KernelIsa() + ")";
}

std::string KernelIsa() {
  ApplyDefaultIsaLimit();
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

absl::Status SetMaxCpuIsa(absl::string_view isa) {
  static const std::map<std::string, dnnl::cpu_isa, std::less<>> kIsas = {
      {"all", dnnl::cpu_isa::all},
      // AMX's bf16 kernels round differently with the column count (found
      // on a Sapphire Rapids Xeon: a seed's answer changed with the tiling),
      // so by default oneDNN stops below them.
      {"default", dnnl::cpu_isa::avx512_core_bf16},
      {"avx2", dnnl::cpu_isa::avx2},
      {"avx512_core", dnnl::cpu_isa::avx512_core},
      {"avx512_core_vnni", dnnl::cpu_isa::avx512_core_vnni},
      {"avx512_core_bf16", dnnl::cpu_isa::avx512_core_bf16},
      {"avx512_core_amx", dnnl::cpu_isa::avx512_core_amx},
  };
  const auto it = kIsas.find(isa);
  if (it == kIsas.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown instruction set \"", isa,
        "\"; use default, all, avx2, avx512_core, avx512_core_vnni, avx512_core_bf16 "
        "or avx512_core_amx"));
  }
  isa_limited.store(true);
  try {
    dnnl::set_max_cpu_isa(it->second);
  } catch (const dnnl::error& e) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the instruction set can be limited only before the first kernel is "
        "made: ",
        e.what()));
  }
  return absl::OkStatus();
}

}  // namespace mcdrop
