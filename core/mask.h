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
  // masks of columns[c]. `scratch` must hold 8 * ScratchPerColumn(units) uint16
  // values, 16-byte aligned; it is overwritten.
  void Apply(float* h, int64_t ld, int units, const MaskColumn* columns,
             int num_columns, uint16_t* scratch) const;

  // Whether unit `unit` of (row, sample) is kept: the reference, one decision
  // at a time (used by tests and by the slow path).
  bool Kept(uint32_t row, uint32_t sample, uint32_t unit) const;

  // Size in uint16 of the scratch Apply needs per column.
  static int ScratchPerColumn(int units) { return (units + 7) / 8 * 8; }

  // The 32-bit threshold: a unit is kept when its uniform is below it.
  uint64_t threshold() const { return threshold_; }
  float scale() const { return scale_; }

 private:
  uint32_t key0_, key1_;
  uint32_t layer_;
  uint64_t threshold_;  // round(q * 2^32), in [0, 2^32]
  uint16_t threshold_hi_, threshold_lo_;
  float scale_;
};

// Philox-4x32-10 of 8 counters at once, structure-of-arrays, written so the
// compiler vectorises it (AVX2: one 8-lane register per word). Exposed for the
// known-answer test against Random123.
void Philox4x32x8(const uint32_t c0[8], const uint32_t c1[8],
                  const uint32_t c2[8], const uint32_t c3[8], uint32_t k0,
                  uint32_t k1, uint32_t out0[8], uint32_t out1[8],
                  uint32_t out2[8], uint32_t out3[8]);

}  // namespace mcdrop

#endif  // MCDROP_CORE_MASK_H_
