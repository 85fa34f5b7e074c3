// Copyright 2026 The mcdrop Authors.
//
// Engine throughput against a plain Eigen GEMM of the same shapes, measured in
// the same run. Networks:
//   a: 13 -> 50 -> 1, drop 0.05 on the input and the hidden layer (UCI size)
//   b: 784 -> 1024 -> 1024 -> 10, drop 0.5 before the two hidden-to-next
//      layers, 0 on the input (MNIST size)
// Arguments: net (0 = a, 1 = b), T, B, threads. bench/report.py turns the
// JSON output into the table of docs/performance.md.

#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "bench/request_flops.h"
#include "core/ars.h"
#include "core/dense_kernel.h"
#include "core/engine.h"
#include "core/thread_pool.h"

namespace mcdrop {
namespace {

ModelSpec NetSpec(int net) {
  const std::vector<int> widths = net == 0
                                      ? std::vector<int>{13, 50, 1}
                                      : std::vector<int>{784, 1024, 1024, 10};
  const std::vector<float> drops = net == 0
                                       ? std::vector<float>{0.05f, 0.05f}
                                       : std::vector<float>{0.0f, 0.5f, 0.5f};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  ModelSpec spec;
  spec.task = net == 0 ? Task::kRegression : Task::kClassification;
  spec.tau = 1.0;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    DenseLayer l;
    const float s = 1.0f / std::sqrt(static_cast<float>(widths[i]));
    l.weight = Eigen::MatrixXf::NullaryExpr(widths[i + 1], widths[i],
                                            [&] { return s * normal(rng); });
    l.bias = Eigen::VectorXf::NullaryExpr(widths[i + 1],
                                          [&] { return 0.1f * normal(rng); });
    l.drop_rate = drops[i];
    spec.layers.push_back(std::move(l));
  }
  return spec;
}

const Model& Net(int net, Precision precision = Precision::kF32) {
  static const Model* models[2] = {new Model(*Model::Create(NetSpec(0))),
                                   new Model(*Model::Create(NetSpec(1)))};
  static const Model* bf16[2] = {
      new Model(*models[0]->WithPrecision(Precision::kBf16)),
      new Model(*models[1]->WithPrecision(Precision::kBf16))};
  return precision == Precision::kBf16 ? *bf16[net] : *models[net];
}

Engine& EngineWith(int threads) {
  static Engine* engines[3] = {nullptr, new Engine({.threads = 1}),
                               new Engine({.threads = 2})};
  return *engines[threads];
}

ThreadPool& GemmPool() {
  static ThreadPool* pool = new ThreadPool(2);
  return *pool;
}

void EngineBench(benchmark::State& state, Precision precision) {
  const int net = state.range(0), T = state.range(1), B = state.range(2),
            threads = state.range(3);
  const Model& model = Net(net, precision);
  Engine& engine = EngineWith(threads);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  const RowMajorMatrixXf x = RowMajorMatrixXf::NullaryExpr(
      B, model.input_size(), [&] { return normal(rng); });
  PredictOptions opt;
  opt.samples = T;
  opt.collect_timing = true;
  double mask = 0, compute = 0;
  uint64_t seed = 1;
  for (auto _ : state) {
    opt.seed = seed++;
    auto p = engine.Predict(model, InputMatrix(x.data(), B, x.cols()), opt);
    if (!p.ok()) {
      state.SkipWithError(p.status().ToString().c_str());
      return;
    }
    mask += p->mask_seconds;
    compute += p->compute_seconds;
    benchmark::DoNotOptimize(p->mean.data());
  }
  state.counters["samples_per_s"] =
      benchmark::Counter(static_cast<double>(T) * B,
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOPs"] =
      benchmark::Counter(RequestFlops(model, T, B) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["mask_share"] = compute > 0 ? mask / compute : 0.0;
}

void BM_Engine(benchmark::State& state) { EngineBench(state, Precision::kF32); }
void BM_EngineBf16(benchmark::State& state) {
  EngineBench(state, Precision::kBf16);
}

// The same products as one request, as plain Eigen GEMMs on preallocated
// buffers, columns split evenly over `threads` threads: the roof the engine
// is measured against.
void BM_PlainGemm(benchmark::State& state) {
  const int net = state.range(0), T = state.range(1), B = state.range(2),
            threads = state.range(3);
  const Model& model = Net(net);
  const int first = model.first_stochastic_layer();
  const int64_t cols = static_cast<int64_t>(T) * B;
  struct Part {
    std::vector<Eigen::MatrixXf> acts;
  };
  std::vector<Part> parts(threads);
  for (int t = 0; t < threads; ++t) {
    const int64_t n = cols / threads + (t < cols % threads);
    parts[t].acts.push_back(Eigen::MatrixXf::Random(model.widths()[first], n));
    for (int l = first; l < model.num_layers(); ++l) {
      parts[t].acts.push_back(Eigen::MatrixXf(model.widths()[l + 1], n));
    }
  }
  Eigen::MatrixXf prefix_in = Eigen::MatrixXf::Random(model.input_size(), B);
  std::vector<Eigen::MatrixXf> prefix_out;
  for (int l = 0; l < first; ++l)
    prefix_out.emplace_back(model.widths()[l + 1], B);
  auto run = [&](int t) {
    for (int l = first; l < model.num_layers(); ++l) {
      parts[t].acts[l - first + 1].noalias() =
          model.layers()[l].weight * parts[t].acts[l - first];
    }
  };
  for (auto _ : state) {
    const Eigen::MatrixXf* in = &prefix_in;
    for (int l = 0; l < first; ++l) {
      prefix_out[l].noalias() = model.layers()[l].weight * *in;
      in = &prefix_out[l];
    }
    if (threads == 1) {
      run(0);
    } else {
      // A persistent pool, as the engine has: no thread start-up in the loop.
      absl::BlockingCounter done(threads);
      for (int t = 0; t < threads; ++t) {
        GemmPool().Schedule([&, t] {
          run(t);
          done.DecrementCount();
        });
      }
      done.Wait();
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(RequestFlops(model, T, B) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int net : {0, 1}) {
    for (int T : {10, 100, 1000, 10000}) {
      for (int B : {1, 32}) {
        // Net b with B = 32, T = 10000 is 1.3 TFLOP a request (~20 s here).
        if (net == 1 && B == 32 && T == 10000) continue;
        for (int threads : {1, 2}) b->Args({net, T, B, threads});
      }
    }
  }
  b->ArgNames({"net", "T", "B", "threads"});
  b->UseRealTime();
  b->Unit(benchmark::kMicrosecond);
}

// The same products through the engine's own kernels (oneDNN, weights
// packed), columns split evenly over the threads, in chunks of at most 4096
// columns (the engine's largest tile), no masks, no statistics: the library's
// roof for the request's shapes.
void BM_LibraryGemm(benchmark::State& state) {
  const int net = state.range(0), T = state.range(1), B = state.range(2),
            threads = state.range(3);
  const Model& model = Net(net);
  const int first = model.first_stochastic_layer();
  const int64_t cols = static_cast<int64_t>(T) * B;
  const int64_t chunk = std::min<int64_t>(4096, (cols + threads - 1) / threads);
  const std::vector<int> widths = model.widths();
  const int width = *std::max_element(widths.begin(), widths.end());
  std::vector<std::vector<float>> a(threads), b(threads);
  for (int t = 0; t < threads; ++t) {
    a[t].assign(static_cast<size_t>(width) * chunk, 0.5f);
    b[t].assign(static_cast<size_t>(width) * chunk, 0.0f);
  }
  auto run = [&](int t) {
    const int64_t begin = cols * t / threads, end = cols * (t + 1) / threads;
    for (int64_t c = begin; c < end; c += chunk) {
      const int64_t n = std::min(chunk, end - c);
      float* in = a[t].data();
      float* out = b[t].data();
      for (int l = first; l < model.num_layers(); ++l) {
        model.kernel(l).Apply(in, n, out);
        std::swap(in, out);
      }
    }
  };
  for (auto _ : state) {
    absl::BlockingCounter done(threads);
    for (int t = 0; t < threads; ++t) {
      GemmPool().Schedule([&, t] {
        run(t);
        done.DecrementCount();
      });
    }
    done.Wait();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(RequestFlops(model, T, B) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

// One kernel call on one thread, by column count: the fixed cost of a call
// (primitive lookup, memory descriptors, scratchpad, stream) shows as the
// time of a tiny call and as the GFLOP/s lost at small column counts.
// shape 0: network (a)'s 13 -> 50 layer; 1: network (b)'s 1024 -> 1024.
void BM_KernelCall(benchmark::State& state) {
  const int shape = state.range(0), cols = state.range(1);
  const int in = shape == 0 ? 13 : 1024, out = shape == 0 ? 50 : 1024;
  const Eigen::MatrixXf w = Eigen::MatrixXf::Random(out, in);
  auto kernel = DenseKernel::Create(w, Precision::kF32);
  if (!kernel.ok()) {
    state.SkipWithError(kernel.status().ToString().c_str());
    return;
  }
  std::vector<float> x(static_cast<size_t>(in) * cols, 0.5f);
  std::vector<float> y(static_cast<size_t>(out) * cols);
  for (auto _ : state) {
    (*kernel)->Apply(x.data(), cols, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(2.0 * in * out * cols * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_KernelCall)
    ->ArgNames({"shape", "cols"})
    ->ArgsProduct({{0, 1}, {1, 16, 128, 1024}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_Engine)->Apply(Args);
BENCHMARK(BM_EngineBf16)->Apply(Args);
BENCHMARK(BM_PlainGemm)->Apply(Args);
BENCHMARK(BM_LibraryGemm)->Apply(Args);

// The machine's FP32 FMA peak: 12 independent chains of vector FMAs in
// registers, per thread. isa 0: AVX2 (8 lanes), 1: AVX-512 (16 lanes).
constexpr int kChains = 12;
constexpr int64_t kFmaRounds = 1 << 22;

__attribute__((target("avx2,fma"))) float FmaAvx2(float seed) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(seed + i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t r = 0; r < kFmaRounds; ++r) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  return _mm256_cvtss_f32(sum);
}

__attribute__((target("avx512f"))) float FmaAvx512(float seed) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(seed + i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t r = 0; r < kFmaRounds; ++r) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  return lanes[0];
}

void BM_FmaPeak(benchmark::State& state) {
  const bool avx512 = state.range(0) == 1;
  const int threads = state.range(1);
  if (avx512 && !__builtin_cpu_supports("avx512f")) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  for (auto _ : state) {
    absl::BlockingCounter done(threads);
    for (int t = 0; t < threads; ++t) {
      GemmPool().Schedule([&, t] {
        benchmark::DoNotOptimize(avx512 ? FmaAvx512(t) : FmaAvx2(t));
        done.DecrementCount();
      });
    }
    done.Wait();
  }
  const double flops = 2.0 * kChains * (avx512 ? 16 : 8) * kFmaRounds * threads;
  state.counters["GFLOPs"] = benchmark::Counter(
      flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_FmaPeak)
    ->ArgNames({"avx512", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The bundled concrete model, 64 rows x T = 100000, with 0 or 16 interval
// levels, on 2 threads: the request that used to hold the engine for 25 s.
const Model& Concrete() {
  static const Model* m = [] {
    auto loaded = Model::Load(std::string(MCDROP_SOURCE_DIR) +
                              "/models/concrete.safetensors");
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      std::abort();
    }
    return new Model(*std::move(loaded));
  }();
  return *m;
}

PredictOptions IntervalRequest(int levels) {
  PredictOptions opt;
  opt.samples = 100000;
  for (int i = 1; i <= levels; ++i) opt.interval_levels.push_back(i / 17.0);
  return opt;
}

RowMajorMatrixXf ConcreteRows(int rows) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  const float typical[8] = {540, 0, 0, 162, 2.5f, 1040, 676, 28};
  return RowMajorMatrixXf::NullaryExpr(
      rows, 8,
      [&](Eigen::Index, Eigen::Index c) { return typical[c] * u(rng); });
}

void BM_Intervals(benchmark::State& state) {
  const RowMajorMatrixXf x = ConcreteRows(64);
  const PredictOptions opt = IntervalRequest(state.range(0));
  for (auto _ : state) {
    auto p =
        EngineWith(2).Predict(Concrete(), InputMatrix(x.data(), 64, 8), opt);
    if (!p.ok()) {
      state.SkipWithError(p.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(p->intervals.data());
  }
}
BENCHMARK(BM_Intervals)
    ->ArgName("levels")
    ->Arg(0)
    ->Arg(16)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A deadline that passes during the interval step: how long after it the
// request ends (DEADLINE_EXCEEDED) and frees the engine's threads.
void BM_IntervalDeadline(benchmark::State& state) {
  const RowMajorMatrixXf x = ConcreteRows(64);
  Engine& engine = EngineWith(2);
  // The passes alone, to place the deadline inside the interval step.
  const absl::Time t0 = absl::Now();
  (void)engine.Predict(Concrete(), InputMatrix(x.data(), 64, 8),
                       IntervalRequest(0));
  const absl::Duration passes = absl::Now() - t0;
  double overshoot = 0, free_after = 0;
  for (auto _ : state) {
    PredictOptions opt = IntervalRequest(16);
    const absl::Time start = absl::Now();
    opt.deadline = start + passes + absl::Milliseconds(50);
    auto p = engine.Predict(Concrete(), InputMatrix(x.data(), 64, 8), opt);
    const absl::Time answered = absl::Now();
    if (!absl::IsDeadlineExceeded(p.status())) {
      state.SkipWithError("the request did not hit its deadline");
      return;
    }
    while (engine.busy_threads() > 0) absl::SleepFor(absl::Microseconds(50));
    overshoot += absl::ToDoubleMilliseconds(answered - opt.deadline);
    free_after += absl::ToDoubleMilliseconds(absl::Now() - opt.deadline);
  }
  state.counters["answered_ms_after_deadline"] =
      benchmark::Counter(overshoot, benchmark::Counter::kAvgIterations);
  state.counters["idle_ms_after_deadline"] =
      benchmark::Counter(free_after, benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_IntervalDeadline)
    ->Iterations(5)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mcdrop

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("build_arch", MCDROP_ARCH_FLAG);
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::AddCustomContext("kernels", mcdrop::KernelPath());
  benchmark::AddCustomContext("mask_generator",
                              mcdrop::ars::HaveAesNi()
                                  ? "ARS-4x32-7, AES instructions"
                                  : "ARS-4x32-7, portable (no AES)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
