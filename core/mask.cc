// Copyright 2026 The mcdrop Authors.

#include "core/mask.h"

#include <Random123/philox.h>

#include <algorithm>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstring>

namespace mcdrop {
namespace {

constexpr uint32_t kRefineBit = 0x80000000u;

// The low 16 bits for the refinement of unit `unit` (see mask.h), from the
// reference scalar Philox of Random123.
uint16_t RefinementBits(uint32_t k0, uint32_t k1, uint32_t layer, uint32_t row,
                        uint32_t sample, uint32_t unit) {
  r123::Philox4x32 rng;
  r123::Philox4x32::ctr_type ctr = {
      {unit / 8, sample, row, layer | kRefineBit}};
  r123::Philox4x32::key_type key = {{k0, k1}};
  const r123::Philox4x32::ctr_type r = rng(ctr, key);
  const uint32_t word = r.v[(unit % 8) / 2];
  return static_cast<uint16_t>((unit % 2) ? (word >> 16) : (word & 0xFFFF));
}

}  // namespace

DropoutMask::DropoutMask(uint64_t seed, uint32_t layer, float drop_rate)
    : key0_(static_cast<uint32_t>(seed)),
      key1_(static_cast<uint32_t>(seed >> 32)),
      layer_(layer & ~kRefineBit) {
  const double q = 1.0 - static_cast<double>(drop_rate);
  threshold_ = static_cast<uint64_t>(std::llround(q * 4294967296.0));
  if (threshold_ > 0xFFFFFFFFull) threshold_ = 0xFFFFFFFFull;
  threshold_hi_ = static_cast<uint16_t>(threshold_ >> 16);
  threshold_lo_ = static_cast<uint16_t>(threshold_ & 0xFFFF);
  scale_ = static_cast<float>(1.0 / q);
  multipliers_.resize(256 * 8);
  for (int k = 0; k < 256; ++k) {
    for (int j = 0; j < 8; ++j)
      multipliers_[8 * k + j] = (k >> j) & 1 ? scale_ : 0.0f;
  }
}

bool DropoutMask::Kept(uint32_t row, uint32_t sample, uint32_t unit) const {
  r123::Philox4x32 rng;
  r123::Philox4x32::ctr_type ctr = {{unit / 8, sample, row, layer_}};
  r123::Philox4x32::key_type key = {{key0_, key1_}};
  const r123::Philox4x32::ctr_type r = rng(ctr, key);
  const uint32_t word = r.v[(unit % 8) / 2];
  const uint16_t hi =
      static_cast<uint16_t>((unit % 2) ? (word >> 16) : (word & 0xFFFF));
  if (hi != threshold_hi_) return hi < threshold_hi_;
  return RefinementBits(key0_, key1_, layer_, row, sample, unit) <
         threshold_lo_;
}

#if defined(__AVX2__)
namespace {

// Philox-4x32-10 on two independent sets of 8 lanes (16 counters), AVX2.
struct Lanes16 {
  __m256i w[4][2];  // word, half
};

inline void MulHiLo(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

inline void Philox16(Lanes16& x, uint32_t k0, uint32_t k1) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int h = 0; h < 2; ++h) {
      __m256i hi0, lo0, hi1, lo1;
      MulHiLo(x.w[0][h], m0, &hi0, &lo0);
      MulHiLo(x.w[2][h], m1, &hi1, &lo1);
      const __m256i na =
          _mm256_xor_si256(_mm256_xor_si256(hi1, x.w[1][h]), key0);
      const __m256i nc =
          _mm256_xor_si256(_mm256_xor_si256(hi0, x.w[3][h]), key1);
      x.w[0][h] = na;
      x.w[1][h] = lo1;
      x.w[2][h] = nc;
      x.w[3][h] = lo0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

}  // namespace
#endif

void DropoutMask::Apply(float* h, int64_t ld, int units,
                        const MaskColumn* columns, int num_columns,
                        uint8_t* scratch) const {
  constexpr int N = kLanes;
  const int blocks = (units + 7) / 8;
  const int full_blocks = units / 8;
  const uint32_t thr = threshold_hi_;
  uint8_t* ties = scratch + N * blocks;
  alignas(32) uint32_t ctr[4][N];
  alignas(32) uint32_t keep_bytes[N], tie_bytes[N];
  for (int base = 0; base < num_columns; base += N) {
    const int lanes = std::min(N, num_columns - base);
    // Lanes beyond `lanes` repeat the last column; their output is ignored.
    for (int i = 0; i < N; ++i) {
      const MaskColumn& col = columns[base + std::min(i, lanes - 1)];
      ctr[1][i] = col.sample;
      ctr[2][i] = col.row;
      ctr[3][i] = layer_;
    }
    // One keep byte per (lane, block): bit j decides unit 8 * block + j, from
    // the 16-bit half j of the block's 128 random bits (keep if <= the
    // threshold's high half; ties are settled exactly below).
    uint32_t any_tie = 0;
    for (int b = 0; b < blocks; ++b) {
#if defined(__AVX2__)
      Lanes16 x;
      const __m256i block = _mm256_set1_epi32(b);
      for (int hh = 0; hh < 2; ++hh) {
        x.w[0][hh] = block;
        for (int w = 1; w < 4; ++w) {
          x.w[w][hh] = _mm256_load_si256(
              reinterpret_cast<const __m256i*>(&ctr[w][8 * hh]));
        }
      }
      Philox16(x, key0_, key1_);
      const __m256i low16 = _mm256_set1_epi32(0xFFFF);
      const __m256i t = _mm256_set1_epi32(static_cast<int>(thr));
      __m256i tie_or = _mm256_setzero_si256();
      for (int hh = 0; hh < 2; ++hh) {
        __m256i keep = _mm256_setzero_si256(), tie = _mm256_setzero_si256();
        for (int w = 0; w < 4; ++w) {
          const __m256i lo = _mm256_and_si256(x.w[w][hh], low16);
          const __m256i hi = _mm256_srli_epi32(x.w[w][hh], 16);
          const __m256i bit_lo = _mm256_set1_epi32(1 << (2 * w));
          const __m256i bit_hi = _mm256_set1_epi32(1 << (2 * w + 1));
          // Values are below 2^16, so the signed compare is exact.
          keep = _mm256_or_si256(
              keep, _mm256_andnot_si256(_mm256_cmpgt_epi32(lo, t), bit_lo));
          keep = _mm256_or_si256(
              keep, _mm256_andnot_si256(_mm256_cmpgt_epi32(hi, t), bit_hi));
          tie = _mm256_or_si256(
              tie, _mm256_and_si256(_mm256_cmpeq_epi32(lo, t), bit_lo));
          tie = _mm256_or_si256(
              tie, _mm256_and_si256(_mm256_cmpeq_epi32(hi, t), bit_hi));
        }
        _mm256_store_si256(reinterpret_cast<__m256i*>(&keep_bytes[8 * hh]),
                           keep);
        _mm256_store_si256(reinterpret_cast<__m256i*>(&tie_bytes[8 * hh]), tie);
        tie_or = _mm256_or_si256(tie_or, tie);
      }
      any_tie |= !_mm256_testz_si256(tie_or, tie_or);
#else
      uint32_t r[4][N];
      for (int i = 0; i < N; ++i) ctr[0][i] = static_cast<uint32_t>(b);
      Philox4x32xN<N>(ctr, key0_, key1_, r);
      for (int i = 0; i < N; ++i) {
        uint32_t byte = 0, tie = 0;
        for (int w = 0; w < 4; ++w) {
          const uint32_t lo = r[w][i] & 0xFFFF, hi = r[w][i] >> 16;
          byte |= static_cast<uint32_t>(lo <= thr) << (2 * w);
          byte |= static_cast<uint32_t>(hi <= thr) << (2 * w + 1);
          tie |= static_cast<uint32_t>(lo == thr) << (2 * w);
          tie |= static_cast<uint32_t>(hi == thr) << (2 * w + 1);
        }
        keep_bytes[i] = byte;
        tie_bytes[i] = tie;
        any_tie |= tie;
      }
#endif
      for (int i = 0; i < N; ++i) {
        scratch[i * blocks + b] = static_cast<uint8_t>(keep_bytes[i]);
        ties[i * blocks + b] = static_cast<uint8_t>(tie_bytes[i]);
      }
    }
    for (int i = 0; i < lanes; ++i) {
      float* col = h + (base + i) * ld;
      const uint8_t* keep = scratch + i * blocks;
      for (int b = 0; b < full_blocks; ++b) {
        const float* m = &multipliers_[8 * keep[b]];
        float* x = col + 8 * b;
#if defined(__AVX2__)
        _mm256_storeu_ps(x,
                         _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(m)));
#else
        for (int j = 0; j < 8; ++j) x[j] *= m[j];
#endif
      }
      for (int u = 8 * full_blocks; u < units; ++u) {
        col[u] *= multipliers_[8 * keep[full_blocks] + (u & 7)];
      }
    }
    if (__builtin_expect(any_tie != 0, 0)) {
      // A unit whose high half equals the threshold's was kept above; decide
      // it with the low 16 bits (probability 2^-16 per unit).
      for (int i = 0; i < lanes; ++i) {
        const MaskColumn& mc = columns[base + i];
        float* col = h + (base + i) * ld;
        for (int b = 0; b < blocks; ++b) {
          const uint32_t tie = ties[i * blocks + b];
          for (int j = 0; j < 8 && tie; ++j) {
            const int u = 8 * b + j;
            if ((tie >> j) & 1 && u < units &&
                RefinementBits(key0_, key1_, layer_, mc.row, mc.sample, u) >=
                    threshold_lo_) {
              col[u] = 0.0f;
            }
          }
        }
      }
    }
  }
}

}  // namespace mcdrop
