// Copyright 2026 The mcdrop Authors.
//
// A trained Monte-Carlo-dropout network and its file format
// (docs/model-format.md).
//
// A v1 model is a stack of dense layers (a v2 model is a layer list, see
// core/layers.h; both run as compiled stages). Layer i of a v1 model computes
//
//   h_{i+1} = act_i(W_i * drop_{p_i}(h_i) + b_i)
//
// where drop_p is inverted dropout (a unit is kept with probability 1 - p and
// then scaled by 1 / (1 - p), as in PyTorch's nn.Dropout), act_i is the
// model's hidden activation for every layer but the last, and the identity for
// the last. h_0 is the input, standardised with input_mean / input_std when
// those are present; the last layer's output is de-standardised with
// output_mean / output_std (regression) or turned into probabilities with a
// softmax (classification).

#ifndef MCDROP_CORE_MODEL_H_
#define MCDROP_CORE_MODEL_H_

#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/conformal.h"
#include "core/dense_kernel.h"
#include "core/layers.h"

namespace mcdrop {

enum class Task { kRegression, kClassification };

absl::string_view TaskName(Task task);
absl::StatusOr<Task> ParseTask(absl::string_view name);
absl::StatusOr<Activation> ParseActivation(absl::string_view name);

// The value of the `format` metadata key this code reads and writes.
inline constexpr absl::string_view kModelFormat = "mcdrop.v1";
// ... for models given as a layer list (ModelSpec::graph).
inline constexpr absl::string_view kModelFormatV2 = "mcdrop.v2";

struct DenseLayer {
  Eigen::MatrixXf weight;  // [out x in]
  Eigen::VectorXf bias;    // [out]
  float drop_rate = 0.0f;  // applied to this layer's input, in [0, 1)
};

// Everything a model file holds, as plain data. Build one by hand (or with the
// trainer) and call Model::Create to validate it.
struct ModelSpec {
  Task task = Task::kRegression;
  // Format v1: a stack of dense layers with one hidden activation.
  Activation activation = Activation::kRelu;
  std::vector<DenseLayer> layers;
  // Format v2: a layer list on inputs of `input_shape` ([C, H, W] for
  // images, [n] for tables). When `graph` is non-empty, `layers` must be
  // empty and `activation` is unused.
  std::vector<LayerDef> graph;
  std::vector<int> input_shape;
  // Standardisation; empty vectors mean "none".
  Eigen::VectorXf input_mean, input_std;    // [in]
  Eigen::VectorXf output_mean, output_std;  // [out], regression only
  // Model precision in output units (regression): the predictive variance
  // includes 1 / tau. Must be > 0 for regression; ignored for classification.
  double tau = 0.0;
  std::string name;
  std::string description;
  int default_samples = 0;  // 0: let the caller choose
  // A default standard-error target (metadata "target_standard_error",
  // "target_relative_error"; 0: none): requests that give neither T nor a
  // target run adaptive T with it (core/adaptive.h).
  double target_standard_error = 0.0;
  double target_relative_error = 0.0;
  // The arithmetic of the products (metadata "precision", absent = f32).
  Precision precision = Precision::kF32;
  // Split-conformal calibration (metadata "calibration", core/conformal.h):
  // regression, score normalized_residual with one score list per output;
  // classification, lac or aps with one list.
  std::optional<Calibration> calibration;
  // Any other __metadata__ keys, kept and written back unchanged.
  std::map<std::string, std::string> extra_metadata;
};

// An immutable, validated model. Cheap to share by const reference or
// shared_ptr; every const method is safe to call from many threads at once.
class Model {
 public:
  // Validates `spec`. v1 (dense `layers`): at least one layer; each weight
  // [out x in] with its bias [out]; layer i's input width equals layer
  // i-1's output width; drop rates in [0, 1); every value finite. v2
  // (`graph`): `input_shape` [n] or [C, H, W] and the layer list as
  // CompileStages (layers.h) checks it. Both: standardisation vectors of the
  // right size (images: per value or per channel) with positive std; tau > 0
  // and finite for regression; no output standardisation for
  // classification, which needs at least two outputs. Returns
  // InvalidArgument naming the offending layer or key.
  static absl::StatusOr<Model> Create(ModelSpec spec);

  // Reads and validates a model file (docs/model-format.md). Every problem is
  // reported as a status naming the tensor or metadata key: NotFound when the
  // file cannot be opened, InvalidArgument for malformed content. Never
  // crashes or reads out of bounds on a malformed file.
  static absl::StatusOr<Model> Load(const std::string& path);

  // Parses a model from the bytes of a model file, as Load does.
  static absl::StatusOr<Model> FromBytes(std::string bytes);

  // The same model computing in `precision` (the weights stay f32 in the
  // spec and in files; the kernels round them).
  absl::StatusOr<Model> WithPrecision(Precision precision) const;

  // The model as model-file bytes (F32 tensors), and written to `path`
  // atomically (temporary file and rename).
  absl::StatusOr<std::string> ToBytes() const;
  absl::Status Save(const std::string& path) const;

  const ModelSpec& spec() const { return spec_; }
  Task task() const { return spec_.task; }
  Activation activation() const { return spec_.activation; }
  // v1 models: the dense stack (empty for a v2 model).
  const std::vector<DenseLayer>& layers() const { return spec_.layers; }
  // True for a v2 (layer-list) model.
  bool has_layer_list() const { return !spec_.graph.empty(); }
  // The computing stages (for a v1 model, one per dense layer).
  const std::vector<Stage>& stages() const { return *stages_; }
  int num_stages() const { return static_cast<int>(stages_->size()); }
  // Number of layers: dense layers (v1) or entries of the layer list (v2).
  int num_layers() const {
    return static_cast<int>(has_layer_list() ? spec_.graph.size()
                                             : spec_.layers.size());
  }
  // The shape of one input example ([n, 1, 1] for tables) and its size.
  Shape input_shape() const { return input_shape_; }
  int input_size() const { return static_cast<int>(input_shape_.size()); }
  int output_size() const {
    return static_cast<int>(stages_->back().out.size());
  }
  double tau() const { return spec_.tau; }
  Precision precision() const { return spec_.precision; }
  // Index of the first stage with a nonzero drop rate, or num_stages() if
  // the model has no dropout at all. Stages before it are deterministic.
  int first_stochastic_layer() const { return first_stochastic_layer_; }
  // Widths h_0 .. h_S: input size, then each stage's output size (values
  // per example).
  std::vector<int> widths() const;
  // The largest of widths() (values per example).
  int max_width() const { return max_width_; }
  // Multiply-adds of one forward pass from stage `from` on.
  int64_t MultiplyAdds(int from = 0) const;
  // Stage l's products (weights packed for this CPU when the model was
  // made; shared by copies of the model). Only for dense stages (a conv
  // stage's group 0; pooling, copy and scale-shift stages have none).
  const DenseKernel& kernel(int l) const { return *stages()[l].kernels[0]; }

 private:
  explicit Model(ModelSpec spec);
  static absl::StatusOr<Model> CreateFromLayerList(ModelSpec spec);
  // Checks what v1 and v2 share (standardisation, task head) and builds.
  static absl::StatusOr<Model> Finish(ModelSpec spec,
                                      std::vector<Stage> stages);
  ModelSpec spec_;
  std::shared_ptr<const std::vector<Stage>> stages_;
  Shape input_shape_;
  int max_width_ = 0;
  int first_stochastic_layer_ = 0;
};

}  // namespace mcdrop

#endif  // MCDROP_CORE_MODEL_H_
