// Copyright 2026 The mcdrop Authors.
//
// Reading numeric tables and the UCI benchmark layout of
// ../shared/data/uci/<name>/ (see that folder's README).

#ifndef MCDROP_CORE_DATASET_H_
#define MCDROP_CORE_DATASET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/trainer.h"

namespace mcdrop {

// Reads a table of numbers: one row per line, values separated by commas
// and/or white space; blank lines and lines starting with '#' are skipped, and
// so is a first line that is not numeric (a header). Files ending in .gz are
// decompressed. Every row must have the same number of values.
// NotFound if the file cannot be read; InvalidArgument (naming the line) for a
// malformed table.
absl::StatusOr<Eigen::MatrixXd> ReadTable(const std::string& path);
// The same for text already in memory; `source` names it in errors.
absl::StatusOr<Eigen::MatrixXd> ParseTable(absl::string_view text,
                                           const std::string& source);

// Parses "0, 3,5" into {0, 3, 5}; InvalidArgument naming a bad item.
absl::StatusOr<std::vector<int>> ParseIntList(absl::string_view text);

// Splits a table into a data set: `target` is the target column (negative
// counts from the end), `features` the feature columns (empty: every other
// column). Classification targets must be non-negative integers; the number
// of classes is the largest label + 1.
absl::StatusOr<Dataset> MakeDataset(const Eigen::MatrixXd& table, Task task,
                                    int target, std::vector<int> features = {});

// A data set in the layout of the paper's experiment code.
struct UciData {
  std::string name;
  Eigen::MatrixXd table;
  std::vector<int> features;
  int target = 0;
  int n_splits = 0, n_hidden = 0, n_epochs = 0;
  std::vector<double> dropout_rates, tau_values;

  static absl::StatusOr<UciData> Load(const std::string& dir);
  // Train and test row indices of split k, as listed in the files.
  absl::Status Split(int k, std::vector<int>* train,
                     std::vector<int>* test) const;
  std::string dir;
};

}  // namespace mcdrop

#endif  // MCDROP_CORE_DATASET_H_
