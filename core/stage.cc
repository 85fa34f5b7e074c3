// Copyright 2026 The mcdrop Authors.

#include "core/stage.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/activation.h"

namespace mcdrop {
namespace {

// Columns of patches per kernel call: at most this many (the engine's
// largest tile, over which the kernels' column independence is tested), and
// at most kPatchBudget floats of patches (but always one example's).
constexpr int64_t kMaxPatchColumns = 4096;
constexpr int64_t kPatchBudget = int64_t{1} << 22;
constexpr int64_t kColumnAlign = 8;

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The patches of group `g` of columns [c0, c0 + m) into `patches`
// ([K x m * P], column per output position, (ky, kx, channel) order).
void Im2Col(const Stage& s, int g, const float* in, int64_t c0, int64_t m,
            float* patches) {
  const int icg = s.in.c / s.groups;
  const int64_t in_size = s.in.size();
  const int kh = s.kernel[0], kw = s.kernel[1];
  float* dst = patches;
  for (int64_t j = c0; j < c0 + m; ++j) {
    const float* image = in + j * in_size + static_cast<int64_t>(g) * icg;
    for (int oy = 0; oy < s.out.h; ++oy) {
      for (int ox = 0; ox < s.out.w; ++ox) {
        for (int ky = 0; ky < kh; ++ky) {
          const int iy = oy * s.stride[0] - s.padding[0] + ky * s.dilation[0];
          for (int kx = 0; kx < kw; ++kx) {
            const int ix = ox * s.stride[1] - s.padding[1] + kx * s.dilation[1];
            // Plain loops: icg is often tiny (1 for a first layer on grey
            // images), where a memmove call per patch entry would dominate.
            if (iy < 0 || iy >= s.in.h || ix < 0 || ix >= s.in.w) {
              for (int c = 0; c < icg; ++c) dst[c] = 0.0f;
            } else {
              const float* src =
                  image + (static_cast<int64_t>(iy) * s.in.w + ix) * s.in.c;
              for (int c = 0; c < icg; ++c) dst[c] = src[c];
            }
            dst += icg;
          }
        }
      }
    }
  }
}

void RunConv(const Stage& s, const float* in, int64_t cols, float* out,
             std::vector<float>* scratch) {
  const int icg = s.in.c / s.groups, ocg = s.out.c / s.groups;
  const int64_t P = static_cast<int64_t>(s.out.h) * s.out.w;
  const int64_t K = static_cast<int64_t>(icg) * s.kernel[0] * s.kernel[1];
  const int64_t m_max = std::max<int64_t>(
      1, std::min(kMaxPatchColumns / P, kPatchBudget / (K * P)));
  const int64_t out_size = s.out.size();
  for (int64_t c0 = 0; c0 < cols; c0 += m_max) {
    const int64_t m = std::min(m_max, cols - c0);
    const int64_t n = m * P, n_pad = RoundUp(n, kColumnAlign);
    const size_t need = static_cast<size_t>(K * n_pad + ocg * n_pad);
    if (scratch->size() < need) scratch->resize(need);
    float* patches = scratch->data();
    float* result = patches + K * n_pad;
    for (int g = 0; g < s.groups; ++g) {
      Im2Col(s, g, in, c0, m, patches);
      std::fill(patches + K * n, patches + K * n_pad, 0.0f);
      s.kernels[g]->Apply(patches, n_pad, result);
      for (int64_t q = 0; q < n; ++q) {
        const int64_t j = c0 + q / P, p = q % P;
        float* dst =
            out + j * out_size + p * s.out.c + static_cast<int64_t>(g) * ocg;
        const float* src = result + q * ocg;
        const float* bias = s.bias.data() + static_cast<int64_t>(g) * ocg;
        for (int o = 0; o < ocg; ++o) dst[o] = src[o] + bias[o];
      }
    }
  }
  ApplyActivation(s.activation, s.negative_slope, out, out_size * cols);
}

void RunPool(const Stage& s, const float* in, int64_t cols, float* out) {
  const bool is_max = s.op == Stage::Op::kMaxPool;
  const int C = s.in.c;
  const int64_t in_size = s.in.size(), out_size = s.out.size();
  for (int64_t j = 0; j < cols; ++j) {
    const float* image = in + j * in_size;
    float* dst = out + j * out_size;
    for (int oy = 0; oy < s.out.h; ++oy) {
      for (int ox = 0; ox < s.out.w; ++ox) {
        float* acc = dst + (static_cast<int64_t>(oy) * s.out.w + ox) * C;
        std::fill(acc, acc + C,
                  is_max ? -std::numeric_limits<float>::infinity() : 0.0f);
        int count = 0;
        for (int ky = 0; ky < s.kernel[0]; ++ky) {
          const int iy = oy * s.stride[0] - s.padding[0] + ky * s.dilation[0];
          for (int kx = 0; kx < s.kernel[1]; ++kx) {
            const int ix = ox * s.stride[1] - s.padding[1] + kx * s.dilation[1];
            if (iy < 0 || iy >= s.in.h || ix < 0 || ix >= s.in.w) {
              // Padding: -inf for max (never chosen), 0 for the average.
              if (s.count_include_pad) ++count;
              continue;
            }
            ++count;
            const float* src =
                image + (static_cast<int64_t>(iy) * s.in.w + ix) * C;
            if (is_max) {
              for (int c = 0; c < C; ++c) acc[c] = std::max(acc[c], src[c]);
            } else {
              for (int c = 0; c < C; ++c) acc[c] += src[c];
            }
          }
        }
        if (!is_max) {
          const float inv = 1.0f / static_cast<float>(std::max(count, 1));
          for (int c = 0; c < C; ++c) acc[c] *= inv;
        }
      }
    }
  }
  ApplyActivation(s.activation, s.negative_slope, out, out_size * cols);
}

void RunAffine(const Stage& s, const float* in, int64_t cols, float* out) {
  const int64_t size = s.in.size();
  const int64_t period = s.scale.size();  // C (per channel) or size
  for (int64_t j = 0; j < cols; ++j) {
    const float* src = in + j * size;
    float* dst = out + j * size;
    for (int64_t p = 0; p < size; p += period) {
      for (int64_t c = 0; c < period; ++c) {
        dst[p + c] = src[p + c] * s.scale[c] + s.bias[c];
      }
    }
  }
  ApplyActivation(s.activation, s.negative_slope, out, size * cols);
}

}  // namespace

void ApplyActivation(Activation activation, float negative_slope, float* z,
                     int64_t n) {
  Eigen::Map<Eigen::ArrayXf> a(z, n);
  nn::Activate(activation, a, negative_slope);
}

void RunStage(const Stage& s, const float* in, int64_t cols, float* out,
              std::vector<float>* scratch) {
  switch (s.op) {
    case Stage::Op::kDense: {
      // As the engine has always done it (v1 answers stay bit-identical):
      // the product, then bias and activation on the aligned matrix.
      s.kernels[0]->Apply(in, cols, out);
      Eigen::Map<Eigen::MatrixXf, Eigen::Aligned32> z(out, s.out.size(), cols);
      z.colwise() += s.bias;
      nn::Activate(s.activation, z, s.negative_slope);
      return;
    }
    case Stage::Op::kConv:
      RunConv(s, in, cols, out, scratch);
      return;
    case Stage::Op::kMaxPool:
    case Stage::Op::kAvgPool:
      RunPool(s, in, cols, out);
      return;
    case Stage::Op::kAffine:
      RunAffine(s, in, cols, out);
      return;
    case Stage::Op::kCopy:
      std::memcpy(out, in, sizeof(float) * s.in.size() * cols);
      ApplyActivation(s.activation, s.negative_slope, out, s.in.size() * cols);
      return;
  }
}

void ApplyStageMask(const Stage& s, const DropoutMask& mask, float* h,
                    const MaskColumn* columns, int cols, uint8_t* bits,
                    float* channel) {
  const int64_t size = s.in.size();
  if (!s.drop_channels) {
    mask.Apply(h, size, static_cast<int>(size), columns, cols, bits);
    return;
  }
  const int C = s.in.c;
  std::fill(channel, channel + static_cast<int64_t>(C) * cols, 1.0f);
  mask.Apply(channel, C, C, columns, cols, bits);
  for (int j = 0; j < cols; ++j) {
    float* col = h + j * size;
    const float* f = channel + static_cast<int64_t>(j) * C;
    for (int64_t p = 0; p < size; p += C) {
      for (int c = 0; c < C; ++c) col[p + c] *= f[c];
    }
  }
}

}  // namespace mcdrop
