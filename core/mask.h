// Copyright 2026 The mcdrop Authors.
//
// Dropout masks from a counter-based random generator.
//
// Every keep/drop decision is a pure function of (seed, row, sample, layer,
// unit): the ARS-4x32-7 generator (core/ars.h; Salmon et al., SC'11, as in
// the Random123 library) is keyed by the 64-bit seed (key words 0 and 1; 2 and
// 3 are zero) and its 128-bit counter is
//
//   (unit / 16, sample, row, layer)      (word 0 first)
//
// One block gives 128 random bits, which decide 16 units, one byte each: byte
// k (little-endian, k = unit % 16) decides unit 16 * (unit / 16) + k. A unit
// is kept when its 32-bit uniform U satisfies U < round(q * 2^32), with
// q = 1 - p the keep probability. The high byte of U is the unit's byte; only
// when it equals the threshold's high byte (probability 1/256) are the low 24
// bits needed, and they are the low 24 bits of word (unit % 4) of a
// refinement block whose counter is (unit / 4, sample, row, layer | 2^31). The
// decision therefore has full 32-bit resolution while costing about 8 random
// bits per unit.
//
// ARS rather than Philox-4x32-10 because on CPUs with AES instructions (every
// x86-64 server CPU since 2010) a block costs 8 AES instructions instead of
// ten rounds of 32x32-bit multiplies and shuffles (about 22 AVX2 operations
// per block): for the small UCI networks, where a pass has only ~11
// multiply-adds per masked unit, Philox masks took more time than the matrix
// products (docs/performance.md). CPUs without AES instructions run a
// portable implementation that gives the same bits, much more slowly.
//
// Because nothing depends on the order in which masks are made, a given seed
// yields the same masks whatever the thread count, chunking or CPU.

#ifndef MCDROP_CORE_MASK_H_
#define MCDROP_CORE_MASK_H_

#include <array>
#include <cstdint>

#include "core/ars.h"

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

  // Which implementation of the generator Apply uses; both give the same
  // bits. kAuto: AES instructions when the CPU has them (checked once).
  enum class Generator { kAuto, kPortable };

  // Applies inverted dropout in place to the first `num_columns` columns of
  // `h` (units x columns, column-major, leading dimension `ld` >= units): each
  // entry is multiplied by 1 / q when kept and by 0 when dropped. Column c
  // uses the masks of columns[c]. `scratch` must hold
  // ScratchSize(units, num_columns) bytes; it is overwritten (with the keep
  // bytes of all columns, applied in one flat pass when ld == units).
  // Thread-safe (const).
  void Apply(float* h, int64_t ld, int units, const MaskColumn* columns,
             int num_columns, uint8_t* scratch,
             Generator generator = Generator::kAuto) const;

  // A keep byte for every unit of every column, plus slack.
  static int64_t ScratchSize(int units, int64_t columns) {
    return columns * units + 16;
  }

  // Whether unit `unit` of (row, sample) is kept: the reference, one decision
  // at a time with the portable generator (used by tests).
  bool Kept(uint32_t row, uint32_t sample, uint32_t unit) const;

  // The 32-bit threshold: a unit is kept when its uniform is below it.
  uint64_t threshold() const { return threshold_; }
  float scale() const { return scale_; }

 private:
  // The low 24 bits of a unit's uniform (needed on ties).
  uint32_t RefinementBits(uint32_t row, uint32_t sample, uint32_t unit) const;
  // Whether a unit whose first-stage byte is `byte` is kept (refining ties).
  bool Decide(uint32_t byte, uint32_t row, uint32_t sample,
              uint32_t unit) const;
  // The keep bytes of Apply, portable generator.
  void KeepBytesPortable(int units, const MaskColumn* columns, int num_columns,
                         uint8_t* keep) const;

  std::array<ars::Block, ars::kRounds + 1> round_keys_;
  uint32_t layer_;
  uint64_t threshold_;     // round(q * 2^32), in [1, 2^32 - 1]
  uint8_t threshold_hi_;   // threshold_ >> 24
  uint32_t threshold_lo_;  // threshold_ & 0xFFFFFF
  // First stage: a byte b is provisionally kept when b <= keep_max_; when
  // has_ties_, b == threshold_hi_ is then settled by the refinement. (When
  // threshold_lo_ is 0 a tie always means "drop", so keep_max_ is
  // threshold_hi_ - 1 and there are no ties.)
  uint8_t keep_max_;
  bool has_ties_;
  float scale_;
};

// ARS-4x32-7 of `n` counters under `keys` into `out`: the AES instructions
// eight blocks at a time when the CPU has them, else the portable generator;
// the same bits either way (used for the predictive draws' noise, draws.h).
void GenerateArsBlocks(const ars::Block* counters, int64_t n,
                       const std::array<ars::Block, ars::kRounds + 1>& keys,
                       ars::Block* out);

}  // namespace mcdrop

#endif  // MCDROP_CORE_MASK_H_
