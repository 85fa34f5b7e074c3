// Copyright 2026 The mcdrop Authors.
//
// mcdrop-model: inspect a model file and run the engine on it locally, with no
// server. Usage:
//
//   mcdrop-model info MODEL
//   mcdrop-model predict MODEL --input "x1,x2,...;x1,x2,..." [--samples T]
//                [--seed S] [--deterministic] [--threads N]

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
#include "core/engine.h"
#include "core/model.h"

ABSL_FLAG(std::string, input, "",
          "Rows to predict: comma-separated values, rows separated by ';'");
ABSL_FLAG(int, samples, 0,
          "Stochastic passes T (0: the model's default, else 1000)");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the dropout masks");
ABSL_FLAG(bool, deterministic, false, "One pass with dropout off");
ABSL_FLAG(int, threads, 0, "Engine threads (0: all cores)");

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mcdrop-model info MODEL | mcdrop-model predict MODEL --input "
      "\"1,2,3;4,5,6\"");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 3 ||
      (std::string(args[1]) != "info" && std::string(args[1]) != "predict")) {
    absl::FPrintF(stderr, "usage: %s\n", absl::ProgramUsageMessage());
    return 2;
  }
  auto model = mcdrop::Model::Load(args[2]);
  if (!model.ok()) {
    absl::FPrintF(stderr, "error: %s\n", model.status().ToString());
    return 1;
  }
  return std::string(args[1]) == "info" ? Info(*model) : Predict(*model);
}
