// Copyright 2026 The mcdrop Authors.
//
// Running one compiled stage (core/layers.h) on a block of columns: the
// engine's per-tile step and the shared prefix both call these.

#ifndef MCDROP_CORE_STAGE_H_
#define MCDROP_CORE_STAGE_H_

#include <cstdint>
#include <vector>

#include "core/layers.h"
#include "core/mask.h"

namespace mcdrop {

// out = act(op(in)) for `cols` columns: `in` holds cols columns of
// stage.in.size() floats, `out` receives cols columns of stage.out.size()
// (HWC, see layers.h); `in` and `out` must not overlap, and for dense stages
// `out` must be 32-byte aligned. The stage's dropout is not applied here.
// `scratch` grows as a convolution needs (at most about 2^22 floats of
// patches plus one output block). Each column's result depends on that
// column alone (never on `cols` or the other columns), so results are the
// same whatever the tiling. Thread-safe for distinct scratch and outputs.
void RunStage(const Stage& stage, const float* in, int64_t cols, float* out,
              std::vector<float>* scratch);

// Applies the stage's input dropout to `cols` columns of `h` in place:
// element-wise (unit = the element's index in the column) or one decision
// per channel (unit = the channel). `bits` must hold
// DropoutMask::ScratchSize(stage.in.size(), cols) bytes and `channel`
// stage.in.c * cols floats.
void ApplyStageMask(const Stage& stage, const DropoutMask& mask, float* h,
                    const MaskColumn* columns, int cols, uint8_t* bits,
                    float* channel);

// z = act(z) in place on n floats.
void ApplyActivation(Activation activation, float negative_slope, float* z,
                     int64_t n);

}  // namespace mcdrop

#endif  // MCDROP_CORE_STAGE_H_
