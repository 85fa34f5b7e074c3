// Copyright 2026 The mcdrop Authors.

#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/mask.h"
#include "scoring/scoring.h"
#include "train/nn.h"

namespace mcdrop {
namespace {

using MatrixF = nn::Matrix<float>;
using VectorF = nn::Vector<float>;

// Keras' Adam: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t),
// p -= lr_t * m / (sqrt(v) + eps).
struct Adam {
  MatrixF m, v;
  void Init(Eigen::Index rows, Eigen::Index cols) {
    m = MatrixF::Zero(rows, cols);
    v = MatrixF::Zero(rows, cols);
  }
  template <typename Param, typename Grad>
  void Step(Param& p, const Grad& g, const TrainConfig& c, double lr_t) {
    m = static_cast<float>(c.beta1) * m + static_cast<float>(1 - c.beta1) * g;
    v = static_cast<float>(c.beta2) * v +
        static_cast<float>(1 - c.beta2) * g.cwiseProduct(g);
    p.array() -= static_cast<float>(lr_t) * m.array() /
                 (v.array().sqrt() + static_cast<float>(c.epsilon));
  }
};

void ColumnStats(const RowMajorMatrixXf& x, Eigen::VectorXf* mean,
                 Eigen::VectorXf* std) {
  const Eigen::MatrixXd xd = x.cast<double>();
  const Eigen::VectorXd mu = xd.colwise().mean();
  Eigen::VectorXd sd =
      ((xd.rowwise() - mu.transpose()).array().square().colwise().mean())
          .sqrt();
  for (Eigen::Index i = 0; i < sd.size(); ++i) {
    if (!(sd[i] > 0)) sd[i] = 1.0;  // constant column (as numpy code does)
  }
  *mean = mu.cast<float>();
  *std = sd.cast<float>();
}

}  // namespace

double PaperWeightDecay(double length_scale, double dropout, int n,
                        double tau) {
  return length_scale * length_scale * (1.0 - dropout) / (2.0 * n * tau);
}

absl::StatusOr<Model> Train(const Dataset& data, const TrainConfig& config) {
  const bool classification = config.task == Task::kClassification;
  const int n = data.size();
  if (n < 1 || data.x.cols() < 1) {
    return absl::InvalidArgumentError("the training set is empty");
  }
  if (!data.x.allFinite()) {
    return absl::InvalidArgumentError(
        "the training inputs hold a non-finite value");
  }
  if (classification) {
    if (static_cast<int>(data.labels.size()) != n || data.num_classes < 2) {
      return absl::InvalidArgumentError(
          "classification needs one label per row and at least 2 classes");
    }
    for (int l : data.labels) {
      if (l < 0 || l >= data.num_classes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "label ", l, " is outside [0, ", data.num_classes, ")"));
      }
    }
  } else if (data.y.rows() != n || data.y.cols() < 1 || !data.y.allFinite()) {
    return absl::InvalidArgumentError(
        "regression needs one finite target row per input row");
  }
  const double input_dropout =
      config.input_dropout < 0 ? config.dropout : config.input_dropout;
  if (!(config.dropout >= 0 && config.dropout < 1 && input_dropout < 1)) {
    return absl::InvalidArgumentError("drop rates must be in [0, 1)");
  }
  if (!(config.tau > 0) && !classification) {
    return absl::InvalidArgumentError("tau must be > 0");
  }
  if (config.epochs < 1 || config.batch_size < 1) {
    return absl::InvalidArgumentError("epochs and batch size must be >= 1");
  }
  for (int h : config.hidden) {
    if (h < 1)
      return absl::InvalidArgumentError("hidden layer sizes must be >= 1");
  }

  // Standardisation on the training data.
  ModelSpec spec;
  spec.task = config.task;
  spec.activation = config.activation;
  ColumnStats(data.x, &spec.input_mean, &spec.input_std);
  MatrixF x =
      ((data.x.rowwise() - spec.input_mean.transpose()).array().rowwise() /
       spec.input_std.transpose().array())
          .matrix()
          .transpose();  // [Q x N]
  MatrixF y;
  int outputs;
  if (classification) {
    outputs = data.num_classes;
  } else {
    ColumnStats(data.y, &spec.output_mean, &spec.output_std);
    y = ((data.y.rowwise() - spec.output_mean.transpose()).array().rowwise() /
         spec.output_std.transpose().array())
            .matrix()
            .transpose();  // [D x N]
    outputs = static_cast<int>(data.y.cols());
    spec.tau = config.tau;
  }

  std::vector<int> widths = {static_cast<int>(data.x.cols())};
  widths.insert(widths.end(), config.hidden.begin(), config.hidden.end());
  widths.push_back(outputs);
  const int L = static_cast<int>(widths.size()) - 1;
  const double lambda =
      config.weight_decay >= 0
          ? config.weight_decay
          : PaperWeightDecay(config.length_scale, config.dropout, n,
                             classification ? 1.0 : config.tau);

  // Glorot-uniform weights and zero biases (Keras' Dense defaults).
  std::mt19937_64 rng(config.seed);
  std::vector<MatrixF> w(L);
  std::vector<VectorF> b(L);
  std::vector<float> rates(L);
  std::vector<Adam> adam_w(L), adam_b(L);
  for (int l = 0; l < L; ++l) {
    const double limit = std::sqrt(6.0 / (widths[l] + widths[l + 1]));
    std::uniform_real_distribution<double> u(-limit, limit);
    w[l] = MatrixF::NullaryExpr(widths[l + 1], widths[l],
                                [&] { return static_cast<float>(u(rng)); });
    b[l] = VectorF::Zero(widths[l + 1]);
    rates[l] = static_cast<float>(l == 0 ? input_dropout : config.dropout);
    adam_w[l].Init(widths[l + 1], widths[l]);
    adam_b[l].Init(widths[l + 1], 1);
  }
  std::vector<DropoutMask> masks;
  for (int l = 0; l < L; ++l) {
    masks.emplace_back(config.seed ^ 0x7261696E6D61736Bull, l,
                       rates[l] > 0 ? rates[l] : 0.5f);
  }

  // Per-batch buffers.
  std::vector<MatrixF> a(L + 1), xd(L), z(L), mask(L);
  std::vector<MatrixF> dw(L);
  std::vector<VectorF> db(L);
  MatrixF dz, da, dx, yb;
  std::vector<int> labels_b;
  std::vector<MaskColumn> columns(config.batch_size);
  std::vector<uint8_t> scratch(DropoutMask::ScratchSize(
      *std::max_element(widths.begin(), widths.end()), config.batch_size));
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);

  const auto start = std::chrono::steady_clock::now();
  int64_t step = 0;
  for (int epoch = 1; epoch <= config.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double loss_sum = 0.0;
    int batches = 0;
    for (int begin = 0; begin < n; begin += config.batch_size) {
      const int nb = std::min(config.batch_size, n - begin);
      ++step;
      a[0].resize(x.rows(), nb);
      if (classification) {
        labels_b.resize(nb);
      } else {
        yb.resize(y.rows(), nb);
      }
      for (int i = 0; i < nb; ++i) {
        const int r = order[begin + i];
        a[0].col(i) = x.col(r);
        if (classification) {
          labels_b[i] = data.labels[r];
        } else {
          yb.col(i) = y.col(r);
        }
        columns[i] = {static_cast<uint32_t>(step), static_cast<uint32_t>(i)};
      }
      // Forward.
      for (int l = 0; l < L; ++l) {
        if (rates[l] > 0) {
          mask[l].setOnes(widths[l], nb);
          masks[l].Apply(mask[l].data(), widths[l], widths[l], columns.data(),
                         nb, scratch.data());
          nn::DropoutForward(a[l], mask[l], &xd[l]);
        } else {
          xd[l] = a[l];
        }
        nn::DenseForward(w[l], b[l], xd[l], &z[l]);
        a[l + 1] = z[l];
        if (l + 1 < L) nn::Activate(config.activation, a[l + 1]);
      }
      double loss = classification
                        ? nn::SoftmaxCrossEntropy(a[L], labels_b, &dz)
                        : nn::MseLoss(a[L], yb, &dz);
      // Backward.
      for (int l = L - 1; l >= 0; --l) {
        nn::DenseBackward(w[l], xd[l], dz, &dw[l], &db[l],
                          l > 0 ? &dx : nullptr);
        dw[l] += static_cast<float>(2 * lambda) * w[l];
        loss += lambda * w[l].squaredNorm();
        if (l > 0) {
          if (rates[l] > 0) {
            nn::DropoutBackward(dx, mask[l], &da);
          } else {
            da = dx;
          }
          nn::ActivationBackward(config.activation, z[l - 1], a[l], da, &dz);
        }
      }
      const double t = static_cast<double>(step);
      const double lr_t = config.learning_rate *
                          std::sqrt(1 - std::pow(config.beta2, t)) /
                          (1 - std::pow(config.beta1, t));
      for (int l = 0; l < L; ++l) {
        adam_w[l].Step(w[l], dw[l], config, lr_t);
        adam_b[l].Step(b[l], db[l], config, lr_t);
      }
      loss_sum += loss;
      ++batches;
    }
    if (!std::isfinite(loss_sum)) {
      return absl::InternalError(
          absl::StrCat("training diverged (non-finite loss) at epoch ", epoch));
    }
    if (config.on_epoch) {
      config.on_epoch(epoch, loss_sum / batches,
                      std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - start)
                          .count());
    }
  }

  for (int l = 0; l < L; ++l) {
    DenseLayer layer;
    layer.weight = w[l];
    layer.bias = b[l];
    layer.drop_rate = rates[l];
    spec.layers.push_back(std::move(layer));
  }
  return Model::Create(std::move(spec));
}

absl::StatusOr<RegressionScores> EvaluateRegression(Engine& engine,
                                                    const Model& model,
                                                    const Dataset& test,
                                                    int samples, uint64_t seed,
                                                    int batch_rows) {
  if (model.task() != Task::kRegression) {
    return absl::InvalidArgumentError(
        "EvaluateRegression needs a regression model");
  }
  if (batch_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_rows must be >= 1, not ", batch_rows));
  }
  const int D = model.output_size();
  if (test.y.cols() != D || test.y.rows() != test.x.rows()) {
    return absl::InvalidArgumentError(
        "test targets do not match the model's outputs");
  }
  SquaredError error;
  double ll = 0.0;
  for (int begin = 0; begin < test.size(); begin += batch_rows) {
    const int nb = std::min(batch_rows, test.size() - begin);
    PredictOptions opt;
    opt.samples = samples;
    opt.seed = seed + begin;
    opt.return_samples = true;
    auto p = engine.Predict(
        model, InputMatrix(test.x.row(begin).data(), nb, test.x.cols()), opt);
    if (!p.ok()) return p.status();
    for (int r = 0; r < nb; ++r) {
      const float* y = test.y.row(begin + r).data();
      for (int d = 0; d < D; ++d) error.Add(y[d], p->Mean(r, d));
      ll += SampleLogLikelihood(p->sample_values.data() + r * D,
                                static_cast<int64_t>(nb) * D, samples, D, y,
                                model.tau());
    }
  }
  RegressionScores s;
  s.n = test.size();
  s.rmse = error.Rmse();
  s.log_likelihood = ll / s.n;
  return s;
}

}  // namespace mcdrop
