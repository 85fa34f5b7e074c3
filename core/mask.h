// Copyright 2026 The mcdrop Authors.
//
// Dropout masks from a counter-based random generator.
//
// Every keep/drop decision is a pure function of (seed, row, sample, layer,
// unit): the Philox-4x32-10 generator (Salmon et al., SC'11; the Random123
// library) is keyed by the 64-bit seed and its 128-bit counter is
//
//   (unit / 8, sample, row, layer)
//
// One Philox block gives 128 random bits, which decide 8 units (16 bits each).
// A unit is kept when its 32-bit uniform U satisfies U < round(q * 2^32), with
// q = 1 - p the keep probability: the high 16 bits of U come from the main
// block; in the rare case (probability 2^-16) that they equal the threshold's
// high half, the low 16 bits are drawn from a second block whose counter has
// the top bit of the layer word set. The decision therefore has full 32-bit
// resolution while costing 16 random bits per unit on average.
//
// Because nothing depends on the order in which masks are made, a given seed
// yields the same masks whatever the thread count or chunking.

#ifndef MCDROP_CORE_MASK_H_
#define MCDROP_CORE_MASK_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

namespace mcdrop {

// Identifies one column of a tile: a (row, sample) pair.
struct MaskColumn {
  uint32_t row;
  uint32_t sample;
};

class DropoutMask {
 public:
  // `drop_rate` in (0, 1).
  DropoutMask(uint64_t seed, uint32_t layer, float drop_rate);

  // Applies inverted dropout in place to the first `num_columns` columns of
  // `h` (units x columns, column-major, leading dimension `ld`): each entry is
  // multiplied by 1 / q when kept and set to 0 when dropped. Column c uses the
  // masks of columns[c]. `scratch` must hold ScratchSize(units) bytes; it is
  // overwritten. Thread-safe (const).
  void Apply(float* h, int64_t ld, int units, const MaskColumn* columns,
             int num_columns, uint8_t* scratch) const;

  // Whether unit `unit` of (row, sample) is kept: the reference, one decision
  // at a time (used by tests and by the slow path).
  bool Kept(uint32_t row, uint32_t sample, uint32_t unit) const;

  // Bytes of scratch Apply needs: a keep byte and a tie byte per 8 units per
  // lane.
  static int ScratchSize(int units) { return 2 * kLanes * ((units + 7) / 8); }
  static constexpr int kLanes = 16;  // columns handled together

  // The 32-bit threshold: a unit is kept when its uniform is below it.
  uint64_t threshold() const { return threshold_; }
  float scale() const { return scale_; }

 private:
  uint32_t key0_, key1_;
  uint32_t layer_;
  uint64_t threshold_;  // round(q * 2^32), in [0, 2^32]
  uint16_t threshold_hi_, threshold_lo_;
  float scale_;
  // multipliers_[8 * k + j]: 1/q if bit j of the keep byte k is set, else 0.
  std::vector<float> multipliers_;
};

// Philox-4x32-10 of N counters at once, structure-of-arrays, written so the
// compiler vectorises it (AVX2: one 8-lane register per word; N = 16 keeps two
// independent chains in flight, hiding the multiply latency). Word w of lane i
// is in[w][i]; the outputs likewise. Exposed for the known-answer test against
// Random123.
template <int N>
inline void Philox4x32xN(const uint32_t (&in)[4][N], uint32_t k0, uint32_t k1,
                         uint32_t (&out)[4][N]) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t a[N], b[N], c[N], d[N];
  for (int i = 0; i < N; ++i) {
    a[i] = in[0][i];
    b[i] = in[1][i];
    c[i] = in[2][i];
    d[i] = in[3][i];
  }
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < N; ++i) {
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
  for (int i = 0; i < N; ++i) {
    out[0][i] = a[i];
    out[1][i] = b[i];
    out[2][i] = c[i];
    out[3][i] = d[i];
  }
}

}  // namespace mcdrop

#endif  // MCDROP_CORE_MASK_H_
