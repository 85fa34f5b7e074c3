// Copyright 2026 The mcdrop Authors.
//
// Convolutional networks (format v2) in the engine, against oneDNN's own
// convolution and matmul primitives on the same shapes, measured in the same
// run. Networks (random weights, the paper's LeNet shape on 1 x 28 x 28):
//   0 LeNet:        conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2,
//                   dense 500 + ReLU, dropout 0.5, dense 10
//   1 all-dropout:  the same with dropout 0.5 after each pooling too
// Arguments: net, T, B, threads. The library run ("BM_LibraryConv") does the
// convolutions before the first dropout once per row, and the layers after
// it on all B x T examples, in batches of 1024 examples, with oneDNN's own
// threading (OpenMP, `threads` threads) and layouts of its choosing: the
// library's roof for the request. Pooling, masks and statistics are the
// engine's extra work.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <dnnl.hpp>
#include <random>
#include <vector>

#include "bench/request_flops.h"
#include "core/engine.h"

extern "C" void omp_set_num_threads(int);

namespace mcdrop {
namespace {

LayerDef Conv(int in_c, int out_c, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f / (5.0f * std::sqrt(in_c)));
  LayerDef l;
  l.kind = LayerKind::kConv2d;
  l.out = out_c;
  l.kernel = {5, 5};
  l.weight = Eigen::MatrixXf::NullaryExpr(out_c, in_c * 25,
                                          [&] { return normal(rng); });
  l.bias = Eigen::VectorXf::Zero(out_c);
  return l;
}

LayerDef Dense(int in, int out, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(in));
  LayerDef l;
  l.kind = LayerKind::kDense;
  l.out = out;
  l.weight = Eigen::MatrixXf::NullaryExpr(out, in, [&] { return normal(rng); });
  l.bias = Eigen::VectorXf::Zero(out);
  return l;
}

LayerDef Simple(LayerKind kind) {
  LayerDef l;
  l.kind = kind;
  l.kernel = l.stride = {2, 2};
  l.rate = 0.5f;
  l.activation = Activation::kRelu;
  return l;
}

ModelSpec LeNetSpec(bool all_dropout) {
  std::mt19937 rng(1);
  ModelSpec spec;
  spec.task = Task::kClassification;
  spec.input_shape = {1, 28, 28};
  std::vector<LayerDef>& g = spec.graph;
  g.push_back(Conv(1, 20, rng));
  g.push_back(Simple(LayerKind::kMaxPool2d));
  if (all_dropout) g.push_back(Simple(LayerKind::kDropout));
  g.push_back(Conv(20, 50, rng));
  g.push_back(Simple(LayerKind::kMaxPool2d));
  if (all_dropout) g.push_back(Simple(LayerKind::kDropout));
  g.push_back(Simple(LayerKind::kFlatten));
  g.push_back(Dense(800, 500, rng));
  g.push_back(Simple(LayerKind::kActivation));
  g.push_back(Simple(LayerKind::kDropout));
  g.push_back(Dense(500, 10, rng));
  return spec;
}

const Model& Net(int net, Precision precision) {
  static const Model* models[2][2] = {};
  const int p = precision == Precision::kBf16;
  if (models[net][p] == nullptr) {
    ModelSpec spec = LeNetSpec(net == 1);
    spec.precision = precision;
    models[net][p] = new Model(*Model::Create(spec));
  }
  return *models[net][p];
}

Engine& EngineWith(int threads) {
  static Engine* engines[3] = {nullptr, new Engine({.threads = 1}),
                               new Engine({.threads = 2})};
  return *engines[threads];
}

void EngineBench(benchmark::State& state, Precision precision) {
  const int net = state.range(0), T = state.range(1), B = state.range(2),
            threads = state.range(3);
  const Model& model = Net(net, precision);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
  const RowMajorMatrixXf x =
      RowMajorMatrixXf::NullaryExpr(B, 784, [&] { return pixel(rng); });
  PredictOptions opt;
  opt.samples = T;
  uint64_t seed = 1;
  for (auto _ : state) {
    opt.seed = seed++;
    auto p =
        EngineWith(threads).Predict(model, InputMatrix(x.data(), B, 784), opt);
    if (!p.ok()) {
      state.SkipWithError(p.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(p->mean.data());
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(RequestFlops(model, T, B) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ConvEngine(benchmark::State& state) {
  EngineBench(state, Precision::kF32);
}
void BM_ConvEngineBf16(benchmark::State& state) {
  EngineBench(state, Precision::kBf16);
}

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// One oneDNN primitive with its memories, set up for a batch of n examples.
struct Step {
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
};

Step ConvStep(dnnl::engine& eng, int n, int ic, int hw, int oc) {
  const int ohw = hw - 4;
  memory::desc src({n, ic, hw, hw}, dt::f32, tag::any);
  memory::desc wei({oc, ic, 5, 5}, dt::f32, tag::any);
  memory::desc bia({oc}, dt::f32, tag::x);
  memory::desc dst({n, oc, ohw, ohw}, dt::f32, tag::any);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                    dnnl::algorithm::convolution_direct, src,
                                    wei, bia, dst, {1, 1}, {0, 0}, {0, 0});
  dnnl::convolution_forward::primitive_desc pd(d, eng);
  return {dnnl::convolution_forward(pd),
          {{DNNL_ARG_SRC, memory(pd.src_desc(), eng)},
           {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng)},
           {DNNL_ARG_BIAS, memory(pd.bias_desc(), eng)},
           {DNNL_ARG_DST, memory(pd.dst_desc(), eng)}}};
}

Step MatmulStep(dnnl::engine& eng, int n, int in, int out) {
  memory::desc src({n, in}, dt::f32, tag::ab);
  memory::desc wei({in, out}, dt::f32, tag::any);
  memory::desc bia({1, out}, dt::f32, tag::ab);
  memory::desc dst({n, out}, dt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, bia, dst), eng);
  return {dnnl::matmul(pd),
          {{DNNL_ARG_SRC, memory(src, eng)},
           {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng)},
           {DNNL_ARG_BIAS, memory(bia, eng)},
           {DNNL_ARG_DST, memory(dst, eng)}}};
}

void BM_LibraryConv(benchmark::State& state) {
  const int net = state.range(0), T = state.range(1), B = state.range(2),
            threads = state.range(3);
  const bool all_dropout = net == 1;
  const int64_t examples = static_cast<int64_t>(B) * T;
  const int batch = static_cast<int>(std::min<int64_t>(1024, examples));
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  omp_set_num_threads(threads);
  // Before the first dropout, once per row.
  // (LeNet's only dropout is before its last layer.)
  std::vector<Step> prefix = {ConvStep(eng, B, 1, 28, 20)};
  if (!all_dropout) {
    prefix.push_back(ConvStep(eng, B, 20, 12, 50));
    prefix.push_back(MatmulStep(eng, B, 800, 500));
  }
  // After it, on every (row, sample), in batches (and one for the rest).
  auto steps = [&](int n) {
    std::vector<Step> v;
    if (all_dropout) {
      v.push_back(ConvStep(eng, n, 20, 12, 50));
      v.push_back(MatmulStep(eng, n, 800, 500));
    }
    v.push_back(MatmulStep(eng, n, 500, 10));
    return v;
  };
  std::vector<Step> full = steps(batch);
  const int rest = static_cast<int>(examples % batch);
  std::vector<Step> last = rest ? steps(rest) : std::vector<Step>{};
  for (auto _ : state) {
    for (Step& s : prefix) s.prim.execute(stream, s.args);
    for (int64_t i = 0; i < examples / batch; ++i) {
      for (Step& s : full) s.prim.execute(stream, s.args);
    }
    for (Step& s : last) s.prim.execute(stream, s.args);
    stream.wait();
  }
  omp_set_num_threads(1);
  state.counters["GFLOPs"] =
      benchmark::Counter(RequestFlops(Net(net, Precision::kF32), T, B) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int net : {0, 1}) {
    for (int T : {10, 100, 1000}) {
      for (int B : {1, 32}) b->Args({net, T, B, 2});
    }
  }
  b->ArgNames({"net", "T", "B", "threads"});
  b->UseRealTime();
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_ConvEngine)->Apply(Args);
BENCHMARK(BM_ConvEngineBf16)->Apply(Args);
BENCHMARK(BM_LibraryConv)->Apply(Args);

}  // namespace
}  // namespace mcdrop

BENCHMARK_MAIN();
