// Copyright 2026 The mcdrop Authors.
//
// What the benchmarks count: the FLOPs of one request.

#ifndef MCDROP_BENCH_REQUEST_FLOPS_H_
#define MCDROP_BENCH_REQUEST_FLOPS_H_

#include "core/model.h"

namespace mcdrop {

// FLOPs the engine does for one request of B rows and T passes: the layers
// before the first dropout once per row, the others once per (row, sample);
// 2 per multiply-add.
inline double RequestFlops(const Model& m, int T, int B) {
  const int first = m.first_stochastic_layer();
  return 2.0 *
         (static_cast<double>(B) * (m.MultiplyAdds() - m.MultiplyAdds(first)) +
          static_cast<double>(B) * T * m.MultiplyAdds(first));
}

}  // namespace mcdrop

#endif  // MCDROP_BENCH_REQUEST_FLOPS_H_
