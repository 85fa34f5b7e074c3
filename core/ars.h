// Copyright 2026 The mcdrop Authors.
//
// ARS-4x32-7, the AES-based counter-based random generator of Salmon, Moraes,
// Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11), as in
// the Random123 library (ars4x32_R(7, ctr, key)): the 128-bit counter is
// xored with the key and put through six AES rounds and a final AES round,
// the round keys following a Weyl sequence (key + r * W, W = the golden ratio
// and sqrt(3) - 1 in 64-bit fixed point, added per 64-bit half).
//
// This header holds the portable implementation (any CPU, two orders of
// magnitude slower than AES-NI); core/mask.cc has the AES-NI one. Both equal
// Random123's reference bit for bit (tests/core/mask_test.cc).

#ifndef MCDROP_CORE_ARS_H_
#define MCDROP_CORE_ARS_H_

#include <array>
#include <cstdint>

namespace mcdrop {
namespace ars {

using Block = std::array<uint32_t, 4>;  // word 0 = least significant

constexpr int kRounds = 7;
constexpr uint64_t kWeylLo = 0x9E3779B97F4A7C15ull;  // golden ratio
constexpr uint64_t kWeylHi = 0xBB67AE8584CAA73Bull;  // sqrt(3) - 1

// The 8 round keys of `key`: round r is key + r * W, per 64-bit half.
std::array<Block, kRounds + 1> RoundKeys(const Block& key);

// ARS-4x32-7 of one counter, in portable C++.
Block Generate(const Block& ctr, const std::array<Block, kRounds + 1>& keys);

// Whether this CPU has the AES instructions (always false off x86-64).
bool HaveAesNi();

}  // namespace ars
}  // namespace mcdrop

#endif  // MCDROP_CORE_ARS_H_
