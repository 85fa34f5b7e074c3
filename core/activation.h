// Copyright 2026 The mcdrop Authors.
//
// The activation functions of the format (model.h), applied in place to any
// Eigen dense object. The engine applies them at inference; the trainer
// (train/nn.h) uses the same function for its forward pass, so a trained
// model is served with exactly the activation it was trained with.

#ifndef MCDROP_CORE_ACTIVATION_H_
#define MCDROP_CORE_ACTIVATION_H_

#include <Eigen/Core>
#include <cmath>
#include <unsupported/Eigen/SpecialFunctions>

#include "core/layers.h"

namespace mcdrop::nn {

// z = act(z), in place. `z` may be a matrix, a Map or a block, of any scalar
// type.
template <typename Derived>
void Activate(Activation activation, Eigen::DenseBase<Derived>& z,
              float negative_slope = 0.01f) {
  using Scalar = typename Derived::Scalar;
  switch (activation) {
    case Activation::kRelu:
      z = z.derived().array().max(Scalar(0));
      break;
    case Activation::kTanh:
      z = z.derived().array().tanh();
      break;
    case Activation::kSigmoid:
      z = z.derived().array().logistic();
      break;
    case Activation::kGelu:
      // Exact GELU (erf form), PyTorch's default nn.GELU.
      z = Scalar(0.5) * z.derived().array() *
          (Scalar(1) + (z.derived().array() * Scalar(M_SQRT1_2)).erf());
      break;
    case Activation::kIdentity:
      break;
    case Activation::kLeakyRelu:
      z = (z.derived().array() > Scalar(0))
              .select(z.derived().array(),
                      z.derived().array() * Scalar(negative_slope));
      break;
  }
}

}  // namespace mcdrop::nn

#endif  // MCDROP_CORE_ACTIVATION_H_
