// Copyright 2026 The mcdrop Authors.

#include "train/dataset.h"

#include <zlib.h>

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/status_macros.h"

namespace mcdrop {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  if (absl::EndsWith(path, ".gz")) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) {
      return absl::NotFoundError(absl::StrCat("cannot open \"", path, "\""));
    }
    std::string out;
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
    const bool error = n < 0;
    gzclose(f);
    if (error)
      return absl::DataLossError(
          absl::StrCat("\"", path, "\" is not valid gzip"));
    return out;
  }
  return ReadFileToString(path);
}

absl::StatusOr<std::vector<double>> ParseRow(absl::string_view line) {
  std::vector<double> row;
  for (absl::string_view tok :
       absl::StrSplit(line, absl::ByAnyChar(", \t\r;"), absl::SkipEmpty())) {
    double v;
    if (!absl::SimpleAtod(tok, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", tok, "\" is not a number"));
    }
    row.push_back(v);
  }
  return row;
}

absl::StatusOr<std::vector<double>> ReadNumbers(const std::string& path) {
  MCDROP_ASSIGN_OR_RETURN(Eigen::MatrixXd t, ReadTable(path));
  return std::vector<double>(t.data(), t.data() + t.size());
}

// The largest count (splits, hidden units, epochs) a UCI folder may give.
constexpr int kMaxCount = 1000000;

// `v`, row `row` of `file`, as an int in [lo, hi]. Checked before the cast:
// converting NaN or a double outside int's range to int is undefined.
absl::StatusOr<int> ToInt(double v, int lo, int hi, absl::string_view file,
                          Eigen::Index row) {
  if (!(v >= lo && v <= hi && v == std::floor(v))) {
    return absl::InvalidArgumentError(absl::StrCat(file, " row ", row, ": ", v,
                                                   " is not an integer in [",
                                                   lo, ", ", hi, "]"));
  }
  return static_cast<int>(v);
}

// Every value of the table `file` in `dir`, in reading order, as ints in
// [lo, hi].
absl::StatusOr<std::vector<int>> ReadInts(const std::string& dir,
                                          const std::string& file, int lo,
                                          int hi) {
  MCDROP_ASSIGN_OR_RETURN(Eigen::MatrixXd t, ReadTable(dir + "/" + file));
  std::vector<int> out;
  out.reserve(t.size());
  for (Eigen::Index r = 0; r < t.rows(); ++r) {
    for (Eigen::Index c = 0; c < t.cols(); ++c) {
      MCDROP_ASSIGN_OR_RETURN(int v, ToInt(t(r, c), lo, hi, file, r));
      out.push_back(v);
    }
  }
  return out;
}

}  // namespace

Dataset Dataset::Subset(const std::vector<int>& index) const {
  Dataset out;
  out.num_classes = num_classes;
  out.x.resize(static_cast<Eigen::Index>(index.size()), x.cols());
  if (y.size()) out.y.resize(static_cast<Eigen::Index>(index.size()), y.cols());
  for (size_t i = 0; i < index.size(); ++i) {
    out.x.row(i) = x.row(index[i]);
    if (y.size()) out.y.row(i) = y.row(index[i]);
    if (!labels.empty()) out.labels.push_back(labels[index[i]]);
  }
  return out;
}

absl::StatusOr<std::vector<int>> ParseIntList(absl::string_view text) {
  std::vector<int> out;
  for (absl::string_view t :
       absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int v;
    if (!absl::SimpleAtoi(t, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", t, "\" is not an integer"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<Eigen::MatrixXd> ReadTable(const std::string& path) {
  MCDROP_ASSIGN_OR_RETURN(std::string text, ReadAll(path));
  return ParseTable(text, path);
}

absl::StatusOr<Eigen::MatrixXd> ParseTable(absl::string_view text,
                                           const std::string& path) {
  std::vector<std::vector<double>> rows;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto row = ParseRow(line);
    if (!row.ok()) {
      if (rows.empty() && line_no == 1) continue;  // a header
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", line_no, ": ", row.status().message()));
    }
    if (!rows.empty() && row->size() != rows.front().size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", line_no, ": ", row->size(),
                       " values, the first row has ", rows.front().size()));
    }
    rows.push_back(*std::move(row));
  }
  if (rows.empty() || rows.front().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no data"));
  }
  Eigen::MatrixXd t(rows.size(), rows.front().size());
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) t(r, c) = rows[r][c];
  }
  return t;
}

absl::StatusOr<Dataset> MakeDataset(const Eigen::MatrixXd& table, Task task,
                                    int target, std::vector<int> features) {
  const int cols = static_cast<int>(table.cols());
  if (target < 0) target += cols;
  if (target < 0 || target >= cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target column is outside the table's ", cols, " columns"));
  }
  if (features.empty()) {
    for (int c = 0; c < cols; ++c) {
      if (c != target) features.push_back(c);
    }
  }
  for (int c : features) {
    if (c < 0 || c >= cols || c == target) {
      return absl::InvalidArgumentError(absl::StrCat("bad feature column ", c));
    }
  }
  Dataset d;
  d.x.resize(table.rows(), static_cast<Eigen::Index>(features.size()));
  for (size_t j = 0; j < features.size(); ++j) {
    d.x.col(j) = table.col(features[j]).cast<float>();
  }
  if (task == Task::kRegression) {
    d.y = table.col(target).cast<float>();
  } else {
    for (Eigen::Index r = 0; r < table.rows(); ++r) {
      const double v = table(r, target);
      // Checked before the cast, NaN included (converting it is undefined).
      if (!(v >= 0 && v <= 1e6 && v == std::floor(v))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "row ", r, ": class label ", v, " is not a non-negative integer"));
      }
      d.labels.push_back(static_cast<int>(v));
      d.num_classes = std::max(d.num_classes, static_cast<int>(v) + 1);
    }
  }
  return d;
}

absl::StatusOr<UciData> UciData::Load(const std::string& dir) {
  UciData u;
  u.dir = dir;
  u.name = dir.substr(dir.find_last_of('/', dir.size() - 2) + 1);
  while (!u.name.empty() && u.name.back() == '/') u.name.pop_back();
  MCDROP_ASSIGN_OR_RETURN(u.table, ReadTable(dir + "/data.txt"));
  const int last_column = static_cast<int>(u.table.cols()) - 1;
  MCDROP_ASSIGN_OR_RETURN(u.features,
                          ReadInts(dir, "index_features.txt", 0, last_column));
  MCDROP_ASSIGN_OR_RETURN(std::vector<int> target,
                          ReadInts(dir, "index_target.txt", 0, last_column));
  u.target = target.front();
  for (auto [file, out] : {std::pair{"n_splits.txt", &u.n_splits},
                           {"n_hidden.txt", &u.n_hidden},
                           {"n_epochs.txt", &u.n_epochs}}) {
    MCDROP_ASSIGN_OR_RETURN(std::vector<int> v,
                            ReadInts(dir, file, 1, kMaxCount));
    *out = v.front();
  }
  MCDROP_ASSIGN_OR_RETURN(u.dropout_rates,
                          ReadNumbers(dir + "/dropout_rates.txt"));
  MCDROP_ASSIGN_OR_RETURN(u.tau_values, ReadNumbers(dir + "/tau_values.txt"));
  return u;
}

absl::Status UciData::Split(int k, std::vector<int>* train,
                            std::vector<int>* test) const {
  const int last_row = static_cast<int>(table.rows()) - 1;
  for (auto [file, out] :
       {std::pair{"index_train_", train}, std::pair{"index_test_", test}}) {
    MCDROP_ASSIGN_OR_RETURN(
        *out, ReadInts(dir, absl::StrCat(file, k, ".txt"), 0, last_row));
  }
  return absl::OkStatus();
}

}  // namespace mcdrop
