// Copyright 2026 The mcdrop Authors.

#include "core/mask.h"

#include <Random123/philox.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mcdrop {
namespace {

constexpr uint32_t kM0 = 0xD2511F53u;
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;
constexpr uint32_t kW1 = 0xBB67AE85u;
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

void Philox4x32x8(const uint32_t c0[8], const uint32_t c1[8],
                  const uint32_t c2[8], const uint32_t c3[8], uint32_t k0,
                  uint32_t k1, uint32_t out0[8], uint32_t out1[8],
                  uint32_t out2[8], uint32_t out3[8]) {
  uint32_t a[8], b[8], c[8], d[8];
  for (int i = 0; i < 8; ++i) {
    a[i] = c0[i];
    b[i] = c1[i];
    c[i] = c2[i];
    d[i] = c3[i];
  }
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 8; ++i) {
      const uint64_t p0 = static_cast<uint64_t>(kM0) * a[i];
      const uint64_t p1 = static_cast<uint64_t>(kM1) * c[i];
      const uint32_t na = static_cast<uint32_t>(p1 >> 32) ^ b[i] ^ k0;
      const uint32_t nb = static_cast<uint32_t>(p1);
      const uint32_t nc = static_cast<uint32_t>(p0 >> 32) ^ d[i] ^ k1;
      const uint32_t nd = static_cast<uint32_t>(p0);
      a[i] = na;
      b[i] = nb;
      c[i] = nc;
      d[i] = nd;
    }
    k0 += kW0;
    k1 += kW1;
  }
  for (int i = 0; i < 8; ++i) {
    out0[i] = a[i];
    out1[i] = b[i];
    out2[i] = c[i];
    out3[i] = d[i];
  }
}

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

void DropoutMask::Apply(float* h, int64_t ld, int units,
                        const MaskColumn* columns, int num_columns,
                        uint16_t* scratch) const {
  const int blocks = (units + 7) / 8;
  const int per_column = blocks * 8;
  alignas(32) uint32_t c0[8], c1[8], c2[8], c3[8];
  alignas(32) uint32_t r0[8], r1[8], r2[8], r3[8];
  for (int base = 0; base < num_columns; base += 8) {
    const int lanes = std::min(8, num_columns - base);
    // Columns beyond `lanes` repeat the last one; their output is ignored.
    for (int i = 0; i < 8; ++i) {
      const MaskColumn& col = columns[base + std::min(i, lanes - 1)];
      c1[i] = col.sample;
      c2[i] = col.row;
      c3[i] = layer_;
    }
    // Random bits for 8 columns, laid out per column: scratch[i * per_column +
    // u].
    for (int b = 0; b < blocks; ++b) {
      for (int i = 0; i < 8; ++i) c0[i] = static_cast<uint32_t>(b);
      Philox4x32x8(c0, c1, c2, c3, key0_, key1_, r0, r1, r2, r3);
      for (int i = 0; i < 8; ++i) {
        uint32_t* dst =
            reinterpret_cast<uint32_t*>(scratch + i * per_column + b * 8);
        dst[0] = r0[i];
        dst[1] = r1[i];
        dst[2] = r2[i];
        dst[3] = r3[i];
      }
    }
    for (int i = 0; i < lanes; ++i) {
      float* col = h + (base + i) * ld;
      const uint16_t* bits = scratch + i * per_column;
      // Units whose high half ties the threshold are kept here and decided
      // exactly below (probability 2^-16 per unit).
      bool tie = false;
      for (int u = 0; u < units; ++u) {
        tie |= bits[u] == threshold_hi_;
        col[u] = bits[u] <= threshold_hi_ ? col[u] * scale_ : 0.0f;
      }
      if (__builtin_expect(tie, 0)) {
        const MaskColumn& mc = columns[base + i];
        for (int u = 0; u < units; ++u) {
          if (bits[u] == threshold_hi_ &&
              RefinementBits(key0_, key1_, layer_, mc.row, mc.sample, u) >=
                  threshold_lo_) {
            col[u] = 0.0f;
          }
        }
      }
    }
  }
}

}  // namespace mcdrop
