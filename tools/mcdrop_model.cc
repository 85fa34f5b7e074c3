// Copyright 2026 The mcdrop Authors.
//
// mcdrop-model: inspect a model file and run the engine on it locally, with no
// server. Usage:
//
//   mcdrop-model info MODEL
//   mcdrop-model predict MODEL --input "x1,x2,...;x1,x2,..." [--samples T]
//                [--seed S] [--deterministic] [--threads N]
//   mcdrop-model calibrate MODEL --data FILE --out OUT [--target_column -1]
//                [--features 0,1] [--samples T] [--seed 1] [--score lac]
//                [--source TEXT] [--threads N]
//
// calibrate scores the model on labelled rows it did not train on and writes
// the model with its split-conformal calibration (core/conformal.h,
// docs/calibration.md) to OUT.

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/calibrate.h"
#include "core/engine.h"
#include "core/model.h"
#include "train/dataset.h"

ABSL_FLAG(std::string, input, "",
          "Rows to predict: comma-separated values, rows separated by ';'");
ABSL_FLAG(int, samples, 0,
          "Stochastic passes T (0: the model's default, else 1000)");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the dropout masks");
ABSL_FLAG(bool, deterministic, false, "One pass with dropout off");
ABSL_FLAG(int, threads, 0, "Engine threads (0: all cores)");
ABSL_FLAG(std::string, data, "",
          "calibrate: labelled rows (CSV or white space, optionally .gz)");
ABSL_FLAG(std::string, out, "", "calibrate: the calibrated model file");
ABSL_FLAG(int, target_column, -1,
          "calibrate: target column of --data (negative counts from the end)");
ABSL_FLAG(std::string, features, "",
          "calibrate: feature columns, comma-separated (default: all but the "
          "target)");
ABSL_FLAG(std::string, score, "lac",
          "calibrate: a classifier's score, lac or aps (regression always "
          "uses normalized_residual)");
ABSL_FLAG(std::string, source, "",
          "calibrate: what the rows are, stored with the calibration "
          "(default: the --data path)");

namespace {

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "error: %s\n", status.ToString());
  return 1;
}

int Info(const mcdrop::Model& model) {
  const mcdrop::ModelSpec& s = model.spec();
  std::vector<std::string> drops;
  for (const mcdrop::Stage& st : model.stages())
    drops.push_back(absl::StrFormat("%g", st.drop_rate));
  absl::PrintF("name:        %s\n", s.name.empty() ? "(none)" : s.name);
  absl::PrintF("description: %s\n", s.description);
  absl::PrintF("task:        %s\n", mcdrop::TaskName(model.task()));
  absl::PrintF("layers:      %s\n", absl::StrJoin(model.widths(), " -> "));
  if (model.has_layer_list()) {
    const mcdrop::Shape in = model.input_shape();
    absl::PrintF("input shape: [%d, %d, %d]\n", in.c, in.h, in.w);
    absl::PrintF("layer list:  %s\n", mcdrop::LayerListJson(s.graph));
  } else {
    absl::PrintF("activation:  %s\n",
                 mcdrop::ActivationName(model.activation()));
  }
  absl::PrintF("dropout:     [%s]\n", absl::StrJoin(drops, ", "));
  if (model.task() == mcdrop::Task::kRegression)
    absl::PrintF("tau:         %g\n", model.tau());
  absl::PrintF("default T:   %d\n", s.default_samples);
  absl::PrintF("standardised inputs: %s, outputs: %s\n",
               s.input_mean.size() ? "yes" : "no",
               s.output_mean.size() ? "yes" : "no");
  if (s.calibration) {
    absl::PrintF(
        "calibration: split conformal, score %s, %d rows, T = %d, made %s "
        "from %s\n",
        mcdrop::ConformalScoreName(s.calibration->score), s.calibration->rows(),
        s.calibration->samples, s.calibration->created, s.calibration->source);
  } else {
    absl::PrintF("calibration: none\n");
  }
  return 0;
}

int Predict(const mcdrop::Model& model) {
  std::vector<float> values;
  int rows = 0;
  for (absl::string_view row : absl::StrSplit(absl::GetFlag(FLAGS_input), ';',
                                              absl::SkipWhitespace())) {
    ++rows;
    for (absl::string_view v : absl::StrSplit(row, ',')) {
      float f;
      if (!absl::SimpleAtof(absl::StripAsciiWhitespace(v), &f)) {
        absl::FPrintF(stderr, "error: \"%s\" in row %d is not a number\n", v,
                      rows);
        return 2;
      }
      values.push_back(f);
    }
  }
  if (rows == 0 || values.size() % rows != 0) {
    absl::FPrintF(
        stderr,
        "error: --input needs rows of equal length, e.g. \"1,2;3,4\"\n");
    return 2;
  }
  const int cols = static_cast<int>(values.size() / rows);
  mcdrop::PredictOptions opt;
  opt.samples = absl::GetFlag(FLAGS_samples);
  if (opt.samples == 0) {
    opt.samples =
        model.spec().default_samples > 0 ? model.spec().default_samples : 1000;
  }
  opt.seed = absl::GetFlag(FLAGS_seed);
  if (absl::GetFlag(FLAGS_deterministic))
    opt.mode = mcdrop::PredictMode::kDeterministic;
  mcdrop::Engine engine({.threads = absl::GetFlag(FLAGS_threads)});
  auto pred = engine.Predict(
      model, mcdrop::InputMatrix(values.data(), rows, cols), opt);
  if (!pred.ok()) {
    absl::FPrintF(stderr, "error: %s\n", pred.status().ToString());
    return 1;
  }
  absl::PrintF("T = %d passes, seed %d%s\n", pred->samples, opt.seed,
               opt.mode == mcdrop::PredictMode::kDeterministic
                   ? " (deterministic)"
                   : "");
  for (int r = 0; r < rows; ++r) {
    if (model.task() == mcdrop::Task::kRegression) {
      for (int d = 0; d < pred->outputs; ++d) {
        const double sd = std::sqrt(pred->Variance(r, d));
        absl::PrintF(
            "row %d output %d: mean %.4f  std %.4f  (model std %.4f)  95%% ~ "
            "[%.4f, %.4f]\n",
            r, d, pred->Mean(r, d), sd,
            std::sqrt(pred->model_variance[r * pred->outputs + d]),
            pred->Mean(r, d) - 1.96 * sd, pred->Mean(r, d) + 1.96 * sd);
      }
    } else {
      std::vector<std::string> probs;
      for (int d = 0; d < pred->outputs; ++d)
        probs.push_back(absl::StrFormat("%.3f", pred->Mean(r, d)));
      absl::PrintF(
          "row %d: class %d  entropy %.4f  mutual information %.4f  variation "
          "ratio %.3f\n"
          "       probabilities [%s]\n",
          r, pred->predicted_class[r], pred->entropy[r],
          pred->mutual_information[r], pred->variation_ratio[r],
          absl::StrJoin(probs, ", "));
    }
  }
  return 0;
}

int Calibrate(const mcdrop::Model& model) {
  const std::string data_path = absl::GetFlag(FLAGS_data);
  if (data_path.empty() || absl::GetFlag(FLAGS_out).empty()) {
    absl::FPrintF(stderr, "error: calibrate needs --data and --out\n");
    return 2;
  }
  auto table = mcdrop::ReadTable(data_path);
  if (!table.ok()) return Fail(table.status());
  std::vector<int> features;
  if (!absl::GetFlag(FLAGS_features).empty()) {
    auto f = mcdrop::ParseIntList(absl::GetFlag(FLAGS_features));
    if (!f.ok()) return Fail(f.status());
    features = *f;
  }
  auto data = mcdrop::MakeDataset(*table, model.task(),
                                  absl::GetFlag(FLAGS_target_column), features);
  if (!data.ok()) return Fail(data.status());
  auto score = mcdrop::ParseConformalScore(absl::GetFlag(FLAGS_score));
  if (!score.ok()) return Fail(score.status());
  mcdrop::CalibrateOptions options;
  // Calibrate at the T the model is served at: the guarantee holds for
  // requests of that T (the server gives conformal answers from it up).
  options.samples =
      absl::GetFlag(FLAGS_samples) > 0   ? absl::GetFlag(FLAGS_samples)
      : model.spec().default_samples > 0 ? model.spec().default_samples
                                         : 100;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.class_score = *score;
  options.source = absl::GetFlag(FLAGS_source).empty()
                       ? data_path
                       : absl::GetFlag(FLAGS_source);
  options.created =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  mcdrop::Engine engine({.threads = absl::GetFlag(FLAGS_threads)});
  auto calibration =
      mcdrop::Calibrate(engine, model, data->x, data->y, data->labels, options);
  if (!calibration.ok()) return Fail(calibration.status());
  mcdrop::ModelSpec spec = model.spec();
  spec.calibration = *calibration;
  auto calibrated = mcdrop::Model::Create(std::move(spec));
  if (!calibrated.ok()) return Fail(calibrated.status());
  if (absl::Status s = calibrated->Save(absl::GetFlag(FLAGS_out)); !s.ok())
    return Fail(s);
  const auto& first = calibration->scores[0];
  absl::PrintF("calibrated %s on %d rows of %s (T = %d, score %s)\n",
               absl::GetFlag(FLAGS_out), calibration->rows(), data_path,
               options.samples, mcdrop::ConformalScoreName(calibration->score));
  for (double level : {0.5, 0.8, 0.9, 0.95}) {
    absl::PrintF("  level %.2f: quantile %.4f%s\n", level,
                 mcdrop::ConformalQuantile(first, level),
                 calibration->scores.size() > 1 ? " (output 0)" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mcdrop-model info MODEL | mcdrop-model predict MODEL --input "
      "\"1,2,3;4,5,6\" | mcdrop-model calibrate MODEL --data FILE --out OUT");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string cmd = args.size() == 3 ? args[1] : "";
  if (cmd != "info" && cmd != "predict" && cmd != "calibrate") {
    absl::FPrintF(stderr, "usage: %s\n", absl::ProgramUsageMessage());
    return 2;
  }
  auto model = mcdrop::Model::Load(args[2]);
  if (!model.ok()) {
    absl::FPrintF(stderr, "error: %s\n", model.status().ToString());
    return 1;
  }
  if (cmd == "calibrate") return Calibrate(*model);
  return cmd == "info" ? Info(*model) : Predict(*model);
}
