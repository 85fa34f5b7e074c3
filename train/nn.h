// Copyright 2026 The mcdrop Authors.
//
// The building blocks of a dropout MLP, forward and backward, on column-major
// batches (one example per column). Templated on the scalar so that the
// trainer runs them in float and the gradient checks in double. The forward
// activation, nn::Activate, is the engine's own (core/activation.h).
//
// Dropout is inverted dropout: `mask` holds 1/q for kept units (q the keep
// probability) and 0 for dropped ones. The forward pass is y = x * mask; the
// backward pass is dx = dy * mask with the same mask, so a dropped unit
// passes no gradient back and a kept one passes it scaled by 1/q, exactly as
// it scaled the activation on the way forward.

#ifndef MCDROP_TRAIN_NN_H_
#define MCDROP_TRAIN_NN_H_

#include <Eigen/Core>
#include <cmath>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#include "core/activation.h"
#include "core/model.h"

namespace mcdrop::nn {

template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// dz = da * act'(z), given the pre-activation z and a = act(z).
template <typename Scalar>
void ActivationBackward(Activation activation, const Matrix<Scalar>& z,
                        const Matrix<Scalar>& a, const Matrix<Scalar>& da,
                        Matrix<Scalar>* dz) {
  switch (activation) {
    case Activation::kRelu:
      *dz = (z.array() > Scalar(0)).select(da, Scalar(0));
      break;
    case Activation::kTanh:
      *dz = da.array() * (Scalar(1) - a.array().square());
      break;
    case Activation::kSigmoid:
      *dz = da.array() * a.array() * (Scalar(1) - a.array());
      break;
    case Activation::kGelu: {
      const Scalar inv_sqrt_2pi = Scalar(0.3989422804014327);
      *dz = da.array() *
            (Scalar(0.5) * (Scalar(1) + (z.array() * Scalar(M_SQRT1_2)).erf()) +
             z.array() * inv_sqrt_2pi *
                 (-Scalar(0.5) * z.array().square()).exp());
      break;
    }
    case Activation::kIdentity:
      *dz = da;
      break;
    case Activation::kLeakyRelu:  // the trainer uses the default slope
      *dz = (z.array() > Scalar(0)).select(da, da * Scalar(0.01));
      break;
  }
}

// z = W x + b.
template <typename Scalar>
void DenseForward(const Matrix<Scalar>& w, const Vector<Scalar>& b,
                  const Matrix<Scalar>& x, Matrix<Scalar>* z) {
  z->noalias() = w * x;
  z->colwise() += b;
}

// Gradients of a dense layer: dW = dz x^T, db = sum over columns of dz,
// dx = W^T dz (skipped when dx is null).
template <typename Scalar>
void DenseBackward(const Matrix<Scalar>& w, const Matrix<Scalar>& x,
                   const Matrix<Scalar>& dz, Matrix<Scalar>* dw,
                   Vector<Scalar>* db, Matrix<Scalar>* dx) {
  dw->noalias() = dz * x.transpose();
  *db = dz.rowwise().sum();
  if (dx != nullptr) dx->noalias() = w.transpose() * dz;
}

template <typename Scalar>
void DropoutForward(const Matrix<Scalar>& x, const Matrix<Scalar>& mask,
                    Matrix<Scalar>* y) {
  *y = x.cwiseProduct(mask);
}

template <typename Scalar>
void DropoutBackward(const Matrix<Scalar>& dy, const Matrix<Scalar>& mask,
                     Matrix<Scalar>* dx) {
  *dx = dy.cwiseProduct(mask);
}

// Mean squared error, averaged over every entry (Keras'
// mean_squared_error: mean over outputs, then over the batch). Writes the
// gradient with respect to `pred`.
template <typename Scalar>
double MseLoss(const Matrix<Scalar>& pred, const Matrix<Scalar>& target,
               Matrix<Scalar>* dpred) {
  const Scalar n = static_cast<Scalar>(pred.size());
  const Matrix<Scalar> diff = pred - target;
  *dpred = diff * (Scalar(2) / n);
  return static_cast<double>(diff.squaredNorm()) / static_cast<double>(n);
}

// Softmax cross-entropy averaged over the batch, numerically stable; labels
// are class indices per column. Writes the gradient with respect to the
// logits: (softmax - onehot) / n.
template <typename Scalar>
double SoftmaxCrossEntropy(const Matrix<Scalar>& logits,
                           const std::vector<int>& labels,
                           Matrix<Scalar>* dlogits) {
  const Eigen::Index n = logits.cols();
  dlogits->resize(logits.rows(), n);
  double loss = 0.0;
  for (Eigen::Index c = 0; c < n; ++c) {
    const Scalar m = logits.col(c).maxCoeff();
    const Vector<Scalar> e = (logits.col(c).array() - m).exp();
    const Scalar sum = e.sum();
    dlogits->col(c) = e / sum;
    loss -= static_cast<double>(logits(labels[c], c) - m - std::log(sum));
    (*dlogits)(labels[c], c) -= Scalar(1);
  }
  *dlogits /= static_cast<Scalar>(n);
  return loss / static_cast<double>(n);
}

}  // namespace mcdrop::nn

#endif  // MCDROP_TRAIN_NN_H_
