// Copyright 2026 The mcdrop Authors.
//
// mcdrop-train: trains dropout networks and writes mcdrop model files, and
// reproduces the paper's UCI regression protocol through the serving engine.
//
//   mcdrop-train fit --data FILE --out MODEL [--task regression] [--target -1]
//                [--hidden 50] [--dropout 0.05] [--tau 1] [--epochs 400] ...
//   mcdrop-train fit --uci DIR --split K --out MODEL ...
//   mcdrop-train uci --data DIR [--splits N] [--epoch_multiplier 100]
//                [--samples 10000] [--threads N] [--out results.md]

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "core/engine.h"
#include "core/thread_pool.h"
#include "train/dataset.h"
#include "train/trainer.h"

ABSL_FLAG(
    std::string, data, "",
    "fit: a table file (CSV or whitespace, .gz ok); uci: a UCI data folder");
ABSL_FLAG(std::string, uci, "",
          "fit: train on split --split of this UCI data folder");
ABSL_FLAG(int, split, 0,
          "fit --uci: the split to train on (its test part is scored)");
ABSL_FLAG(std::string, out, "",
          "fit: the model file to write; uci: a markdown file for the table");
ABSL_FLAG(std::string, task, "regression", "regression or classification");
ABSL_FLAG(int, target, -1, "target column (negative counts from the end)");
ABSL_FLAG(std::string, features, "",
          "feature columns, comma-separated (default: all but the target)");
ABSL_FLAG(std::string, hidden, "50", "hidden layer sizes, comma-separated");
ABSL_FLAG(std::string, activation, "relu",
          "relu, tanh, sigmoid, gelu or identity");
ABSL_FLAG(double, dropout, 0.05, "drop rate before every dense layer");
ABSL_FLAG(double, input_dropout, -1,
          "drop rate on the input (< 0: same as --dropout)");
ABSL_FLAG(double, tau, 1.0, "model precision tau in target units (regression)");
ABSL_FLAG(double, length_scale, 1e-2,
          "prior length-scale l of the weight decay");
ABSL_FLAG(int, epochs, 400, "fit: epochs");
ABSL_FLAG(int, batch_size, 128, "mini-batch size");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate");
ABSL_FLAG(uint64_t, seed, 1, "seed of initialisation, shuffling and masks");
ABSL_FLAG(std::string, name, "", "fit: model name written into the file");
ABSL_FLAG(std::string, description, "",
          "fit: model description written into the file");
ABSL_FLAG(int, default_samples, 100, "fit: default T written into the file");
ABSL_FLAG(int, samples, 10000, "T for evaluation (the paper uses 10000)");
ABSL_FLAG(std::string, precision, "f32",
          "arithmetic of the engine's products in every evaluation (f32 or "
          "bf16); training is always f32");
ABSL_FLAG(int, splits, 0, "uci: number of splits to run (0: all)");
ABSL_FLAG(int, epoch_multiplier, 100,
          "uci: epochs = multiplier x n_epochs.txt (published: 100)");
ABSL_FLAG(int, threads, 0, "worker threads (0: all cores)");
ABSL_FLAG(bool, quiet, false, "no progress on stderr");

namespace mcdrop {
namespace {

// A trained model evaluated in the --precision of the flags.
absl::StatusOr<mcdrop::Model> InPrecision(absl::StatusOr<mcdrop::Model> model) {
  if (!model.ok()) return model;
  auto precision = mcdrop::ParsePrecision(absl::GetFlag(FLAGS_precision));
  if (!precision.ok()) return precision.status();
  return model->WithPrecision(*precision);
}

}  // namespace

namespace {

struct Published {
  double rmse, rmse_se, ll, ll_se;
};
// Gal & Ghahramani's grid-search figures: MC RMSE and test log-likelihood,
// mean and standard error over the splits, as published with their
// experiment code (yaringal/DropoutUncertaintyExps); docs/results.md sets
// ours beside them.
const std::map<std::string, Published>& PublishedFigures() {
  static const auto* m = new std::map<std::string, Published>{
      {"bostonHousing", {2.90, 0.18, -2.40, 0.04}},
      {"concrete", {4.82, 0.16, -2.93, 0.02}},
      {"energy", {0.54, 0.06, -1.21, 0.01}},
      {"kin8nm", {0.08, 0.00, 1.14, 0.01}},
      {"wine-quality-red", {0.62, 0.01, -0.93, 0.01}},
      {"yacht", {0.67, 0.05, -1.25, 0.01}},
  };
  return *m;
}

int Fail(const absl::Status& s) {
  absl::FPrintF(stderr, "error: %s\n", s.ToString());
  return 1;
}

int Threads() {
  const int t = absl::GetFlag(FLAGS_threads);
  return t > 0 ? t
               : static_cast<int>(
                     std::max(1u, std::thread::hardware_concurrency()));
}

absl::StatusOr<TrainConfig> ConfigFromFlags() {
  TrainConfig c;
  auto task = ParseTask(absl::GetFlag(FLAGS_task));
  if (!task.ok()) return task.status();
  c.task = *task;
  auto act = ParseActivation(absl::GetFlag(FLAGS_activation));
  if (!act.ok()) return act.status();
  c.activation = *act;
  auto hidden = ParseIntList(absl::GetFlag(FLAGS_hidden));
  if (!hidden.ok()) return hidden.status();
  c.hidden = *hidden;
  c.dropout = absl::GetFlag(FLAGS_dropout);
  c.input_dropout = absl::GetFlag(FLAGS_input_dropout);
  c.tau = absl::GetFlag(FLAGS_tau);
  c.length_scale = absl::GetFlag(FLAGS_length_scale);
  c.epochs = absl::GetFlag(FLAGS_epochs);
  c.batch_size = absl::GetFlag(FLAGS_batch_size);
  c.learning_rate = absl::GetFlag(FLAGS_lr);
  c.seed = absl::GetFlag(FLAGS_seed);
  return c;
}

int Fit(const std::string& command_line) {
  auto config = ConfigFromFlags();
  if (!config.ok()) return Fail(config.status());
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Fail(absl::InvalidArgumentError("--out is required"));

  Dataset train, test;
  bool have_test = false;
  std::string source;
  if (!absl::GetFlag(FLAGS_uci).empty()) {
    auto uci = UciData::Load(absl::GetFlag(FLAGS_uci));
    if (!uci.ok()) return Fail(uci.status());
    auto all =
        MakeDataset(uci->table, Task::kRegression, uci->target, uci->features);
    if (!all.ok()) return Fail(all.status());
    std::vector<int> tr, te;
    if (auto s = uci->Split(absl::GetFlag(FLAGS_split), &tr, &te); !s.ok())
      return Fail(s);
    train = all->Subset(tr);
    test = all->Subset(te);
    have_test = true;
    source = absl::StrCat(uci->name, " split ", absl::GetFlag(FLAGS_split));
  } else {
    if (absl::GetFlag(FLAGS_data).empty()) {
      return Fail(
          absl::InvalidArgumentError("--data FILE or --uci DIR is required"));
    }
    auto table = ReadTable(absl::GetFlag(FLAGS_data));
    if (!table.ok()) return Fail(table.status());
    std::vector<int> features;
    if (!absl::GetFlag(FLAGS_features).empty()) {
      auto f = ParseIntList(absl::GetFlag(FLAGS_features));
      if (!f.ok()) return Fail(f.status());
      features = *f;
    }
    auto d = MakeDataset(*table, config->task, absl::GetFlag(FLAGS_target),
                         features);
    if (!d.ok()) return Fail(d.status());
    train = *std::move(d);
    source = absl::GetFlag(FLAGS_data);
  }

  const bool quiet = absl::GetFlag(FLAGS_quiet);
  const int every = std::max(1, config->epochs / 20);
  config->on_epoch = [&](int epoch, double loss, double seconds) {
    if (!quiet && (epoch % every == 0 || epoch == config->epochs)) {
      absl::FPrintF(stderr, "epoch %d/%d  loss %.5f  %.1f s\n", epoch,
                    config->epochs, loss, seconds);
    }
  };
  absl::FPrintF(stderr, "training on %d rows of %s\n", train.size(), source);
  auto model = Train(train, *config);
  if (!model.ok()) return Fail(model.status());

  ModelSpec spec = model->spec();
  spec.name = absl::GetFlag(FLAGS_name);
  spec.description = absl::GetFlag(FLAGS_description);
  spec.default_samples = absl::GetFlag(FLAGS_default_samples);
  spec.extra_metadata["trained_by"] = command_line;
  spec.extra_metadata["training_data"] = source;
  spec.extra_metadata["training_rows"] = absl::StrCat(train.size());
  auto final_model = Model::Create(std::move(spec));
  if (!final_model.ok()) return Fail(final_model.status());
  if (auto s = final_model->Save(out); !s.ok()) return Fail(s);
  absl::PrintF("wrote %s\n", out);

  if (have_test) {
    Engine engine({.threads = Threads()});
    auto scores = EvaluateRegression(engine, *final_model, test,
                                     absl::GetFlag(FLAGS_samples), 1);
    if (!scores.ok()) return Fail(scores.status());
    absl::PrintF("test (%d rows, T = %d): RMSE %.4f  log-likelihood %.4f\n",
                 scores->n, absl::GetFlag(FLAGS_samples), scores->rmse,
                 scores->log_likelihood);
  }
  return 0;
}

struct GridResult {
  double p = 0, tau = 0, val_ll = -INFINITY;
};

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}
double StdErr(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / v.size()) / std::sqrt(static_cast<double>(v.size()));
}

int Uci(const std::string& command_line) {
  auto uci = UciData::Load(absl::GetFlag(FLAGS_data));
  if (!uci.ok()) return Fail(uci.status());
  auto all =
      MakeDataset(uci->table, Task::kRegression, uci->target, uci->features);
  if (!all.ok()) return Fail(all.status());
  int splits = absl::GetFlag(FLAGS_splits);
  if (splits <= 0 || splits > uci->n_splits) splits = uci->n_splits;
  const int epochs = uci->n_epochs * absl::GetFlag(FLAGS_epoch_multiplier);
  const int T = absl::GetFlag(FLAGS_samples);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  const int threads = Threads();
  Engine engine({.threads = threads});
  ThreadPool jobs(threads);
  absl::Mutex mu;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start)
        .count();
  };

  std::vector<Dataset> train(splits), test(splits), fit(splits), val(splits);
  for (int k = 0; k < splits; ++k) {
    std::vector<int> tr, te;
    if (auto s = uci->Split(k, &tr, &te); !s.ok()) return Fail(s);
    train[k] = all->Subset(tr);
    test[k] = all->Subset(te);
    const size_t n_fit = static_cast<size_t>(0.8 * tr.size());
    fit[k] = all->Subset(std::vector<int>(tr.begin(), tr.begin() + n_fit));
    val[k] = all->Subset(std::vector<int>(tr.begin() + n_fit, tr.end()));
  }
  auto config_for = [&](double p, double tau, uint64_t job_seed) {
    TrainConfig c;
    c.hidden = {uci->n_hidden};
    c.dropout = p;
    c.tau = tau;
    c.epochs = epochs;
    c.batch_size = absl::GetFlag(FLAGS_batch_size);
    c.seed = job_seed;
    return c;
  };

  // Phase 1: the grid on every split, scored by validation log-likelihood.
  const int grid =
      static_cast<int>(uci->dropout_rates.size() * uci->tau_values.size());
  std::vector<std::vector<GridResult>> results(splits,
                                               std::vector<GridResult>(grid));
  absl::Status failure;
  {
    absl::BlockingCounter pending(splits * grid);
    for (int k = 0; k < splits; ++k) {
      for (int g = 0; g < grid; ++g) {
        jobs.Schedule([&, k, g] {
          const double p = uci->dropout_rates[g / uci->tau_values.size()];
          const double tau = uci->tau_values[g % uci->tau_values.size()];
          auto model = InPrecision(
              Train(fit[k], config_for(p, tau, seed * 1000003 + k * 1009 + g)));
          absl::StatusOr<RegressionScores> s =
              model.ok()
                  ? EvaluateRegression(engine, *model, val[k], T, seed + k)
                  : absl::StatusOr<RegressionScores>(model.status());
          absl::MutexLock lock(&mu);
          if (!s.ok()) {
            failure = s.status();
          } else {
            results[k][g] = {p, tau, s->log_likelihood};
            if (!quiet) {
              absl::FPrintF(
                  stderr,
                  "[%s split %d] p=%g tau=%g: validation LL %.4f  (%.0f s)\n",
                  uci->name, k, p, tau, s->log_likelihood, elapsed());
            }
          }
          pending.DecrementCount();
        });
      }
    }
    pending.Wait();
  }
  if (!failure.ok()) return Fail(failure);

  // Phase 2: the best pair retrained on the whole training part, scored on
  // the test part.
  std::vector<GridResult> best(splits);
  std::vector<RegressionScores> scores(splits);
  {
    absl::BlockingCounter pending(splits);
    for (int k = 0; k < splits; ++k) {
      for (const GridResult& r : results[k]) {
        if (r.val_ll > best[k].val_ll) best[k] = r;
      }
      jobs.Schedule([&, k] {
        auto model = InPrecision(
            Train(train[k], config_for(best[k].p, best[k].tau,
                                       seed * 1000003 + k * 1009 + 999)));
        absl::StatusOr<RegressionScores> s =
            model.ok() ? EvaluateRegression(engine, *model, test[k], T,
                                            seed + 7919 * (k + 1))
                       : absl::StatusOr<RegressionScores>(model.status());
        absl::MutexLock lock(&mu);
        if (!s.ok()) {
          failure = s.status();
        } else {
          scores[k] = *s;
          if (!quiet) {
            absl::FPrintF(stderr,
                          "[%s split %d] best p=%g tau=%g: test RMSE %.4f LL "
                          "%.4f  (%.0f s)\n",
                          uci->name, k, best[k].p, best[k].tau, s->rmse,
                          s->log_likelihood, elapsed());
          }
        }
        pending.DecrementCount();
      });
    }
    pending.Wait();
  }
  if (!failure.ok()) return Fail(failure);

  std::vector<double> rmse, ll;
  for (const auto& s : scores) {
    rmse.push_back(s.rmse);
    ll.push_back(s.log_likelihood);
  }
  std::string md = absl::StrFormat(
      "### %s\n\n%d splits, %d epochs (%d x %d), T = %d, %d threads, %.0f s "
      "wall-clock\n\n"
      "| | MC RMSE | Test LL |\n|---|---|---|\n| mcdrop | %.3f +- %.3f | %.3f "
      "+- %.3f |\n",
      uci->name, splits, epochs, absl::GetFlag(FLAGS_epoch_multiplier),
      uci->n_epochs, T, threads, elapsed(), Mean(rmse), StdErr(rmse), Mean(ll),
      StdErr(ll));
  auto pub = PublishedFigures().find(uci->name);
  if (pub != PublishedFigures().end()) {
    const Published& p = pub->second;
    absl::StrAppendFormat(&md, "| published | %.2f +- %.2f | %.2f +- %.2f |\n",
                          p.rmse, p.rmse_se, p.ll, p.ll_se);
    const double rmse_tol = 2 * std::max(p.rmse_se, 0.01),
                 ll_tol = 2 * std::max(p.ll_se, 0.01);
    const bool rmse_ok = Mean(rmse) <= p.rmse + rmse_tol;
    const bool ll_ok = Mean(ll) >= p.ll - ll_tol;
    absl::StrAppendFormat(&md,
                          "\nWithin 2 published s.e. (RMSE <= %.2f, LL >= "
                          "%.2f): RMSE %s, LL %s\n",
                          p.rmse + rmse_tol, p.ll - ll_tol,
                          rmse_ok ? "yes" : "NO", ll_ok ? "yes" : "NO");
  }
  absl::StrAppend(&md,
                  "\n| split | p | tau | validation LL | test RMSE | test LL "
                  "|\n|---|---|---|---|---|---|\n");
  for (int k = 0; k < splits; ++k) {
    absl::StrAppendFormat(&md, "| %d | %g | %g | %.4f | %.4f | %.4f |\n", k,
                          best[k].p, best[k].tau, best[k].val_ll,
                          scores[k].rmse, scores[k].log_likelihood);
  }
  absl::StrAppendFormat(&md, "\nCommand: `%s`\n\n", command_line);
  absl::PrintF("%s", md);
  if (!absl::GetFlag(FLAGS_out).empty()) {
    std::ofstream f(absl::GetFlag(FLAGS_out), std::ios::app);
    f << md;
  }
  return 0;
}

}  // namespace
}  // namespace mcdrop

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mcdrop-train fit --data FILE --out MODEL [flags] | "
      "mcdrop-train uci --data DIR [--splits N] [--epoch_multiplier M]");
  std::vector<std::string> words(argv, argv + argc);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  std::string command_line = "mcdrop-train";
  for (size_t i = 1; i < words.size(); ++i)
    absl::StrAppend(&command_line, " ", words[i]);
  if (args.size() != 2) {
    absl::FPrintF(stderr, "usage: %s\n", absl::ProgramUsageMessage());
    return 2;
  }
  const std::string cmd = args[1];
  if (cmd == "fit") return mcdrop::Fit(command_line);
  if (cmd == "uci") return mcdrop::Uci(command_line);
  absl::FPrintF(stderr, "unknown command \"%s\"\nusage: %s\n", cmd,
                absl::ProgramUsageMessage());
  return 2;
}
