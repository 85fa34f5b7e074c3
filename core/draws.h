// Copyright 2026 The mcdrop Authors.
//
// Draws from the approximate predictive distribution of MC dropout (Gal &
// Ghahramani 2016, section 3.3): a weight sample from the dropout posterior
// gives the pass output f_t(x), and y ~ N(f_t(x), 1/tau) adds the observation
// noise. The noise is a pure function of (seed, sample, row, output), drawn
// from the same counter-based generator as the dropout masks (mask.h) in its
// own counter domain, so a seed gives bit-identical draws whatever the
// threads, tiles or CPU.

#ifndef MCDROP_CORE_DRAWS_H_
#define MCDROP_CORE_DRAWS_H_

#include <cstdint>
#include <vector>

namespace mcdrop {

// The counter's layer word of the noise: distinct from every mask layer
// (small numbers) and from their refinement blocks (bit 31 set).
inline constexpr uint32_t kNoiseLayer = 0x7FFFFFFEu;

// Adds N(0, sigma^2) to each of the `samples` values [T x B x D]
// (row-major), whose passes are first_sample + t and whose rows are
// row_ids[b] (b when row_ids is empty). The standard normal of (t, b, d)
// comes from the ARS block of counter (d / 2, t, b, kNoiseLayer) keyed by
// `seed`: Box-Muller on its words 0 and 1 for an even d, 2 and 3 for an odd d,
// with the uniforms (w + 0.5) / 2^32 in (0, 1).
void AddPredictiveNoise(uint64_t seed, double sigma, int T, int B, int D,
                        float* samples, uint32_t first_sample = 0,
                        const std::vector<uint32_t>& row_ids = {});

// The standard normal AddPredictiveNoise uses for (t, b, d), from the
// portable generator one at a time (the reference for tests).
double PredictiveNoiseReference(uint64_t seed, int t, int b, int d);

}  // namespace mcdrop

#endif  // MCDROP_CORE_DRAWS_H_
