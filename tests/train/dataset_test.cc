// Copyright 2026 The mcdrop Authors.

#include "train/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace mcdrop {
namespace {

using ::testing::HasSubstr;

TEST(DatasetTest, ReadsTablesAndUciLayout) {
  auto uci = UciData::Load(std::string(MCDROP_TESTDATA_DIR) + "/uci/yacht");
  ASSERT_TRUE(uci.ok()) << uci.status();
  EXPECT_EQ(uci->table.rows(), 308);
  EXPECT_EQ(uci->features.size(), 6u);
  EXPECT_EQ(uci->target, 6);
  EXPECT_EQ(uci->n_hidden, 50);
  std::vector<int> train, test;
  ASSERT_TRUE(uci->Split(0, &train, &test).ok());
  EXPECT_EQ(train.size() + test.size(), 308u);
  EXPECT_FALSE(ReadTable("/no/such/table.txt").ok());
}

// A small UCI folder (4 rows of 3 columns) in a temporary directory, with
// `files` replacing the default content of any file.
std::string UciFolder(const std::string& name,
                      const std::map<std::string, std::string>& files) {
  const std::string dir = ::testing::TempDir() + "/uci_" + name;
  ::mkdir(dir.c_str(), 0700);
  std::map<std::string, std::string> all = {
      {"data.txt", "1 2 3\n4 5 6\n7 8 9\n10 11 12\n"},
      {"index_features.txt", "0\n1\n"},
      {"index_target.txt", "2\n"},
      {"index_train_0.txt", "0\n1\n2\n"},
      {"index_test_0.txt", "3\n"},
      {"n_splits.txt", "1\n"},
      {"n_hidden.txt", "50\n"},
      {"n_epochs.txt", "40\n"},
      {"dropout_rates.txt", "0.005\n0.01\n"},
      {"tau_values.txt", "0.25\n0.5\n"}};
  for (const auto& [file, text] : files) all[file] = text;
  for (const auto& [file, text] : all) std::ofstream(dir + "/" + file) << text;
  return dir;
}

TEST(DatasetTest, SmallUciFolderLoadsAndSplits) {
  auto uci = UciData::Load(UciFolder("good", {}));
  ASSERT_TRUE(uci.ok()) << uci.status();
  EXPECT_EQ(uci->features, (std::vector<int>{0, 1}));
  EXPECT_EQ(uci->target, 2);
  EXPECT_EQ(uci->n_splits, 1);
  std::vector<int> train, test;
  ASSERT_TRUE(uci->Split(0, &train, &test).ok());
  EXPECT_EQ(train, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(test, (std::vector<int>{3}));
}

// Every value that is not an integer in range is refused, naming the file
// and the row, before any conversion to int (undefined for NaN or values
// outside int's range).
TEST(DatasetTest, UciIndicesAndCountsOutOfRangeAreRefusedByRow) {
  const std::vector<std::pair<std::string, std::string>> bad_load = {
      {"index_features.txt", "0\n1e20\n"},
      {"index_features.txt", "0\nnan\n"},
      {"index_features.txt", "0\n3\n"},
      {"index_features.txt", "0\n-1\n"},
      {"index_features.txt", "0\n0.5\n"},
      {"index_target.txt", "-2147483649\n"},
      {"index_target.txt", "inf\n"},
      {"n_splits.txt", "1e300\n"},
      {"n_hidden.txt", "nan\n"},
      {"n_hidden.txt", "0\n"},
      {"n_epochs.txt", "2.5\n"},
      {"n_epochs.txt", "-inf\n"},
  };
  for (const auto& [file, text] : bad_load) {
    SCOPED_TRACE(file + ": " + text);
    auto uci = UciData::Load(UciFolder("bad_load", {{file, text}}));
    EXPECT_EQ(uci.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(uci.status().message(), HasSubstr(file + " row "));
    EXPECT_THAT(uci.status().message(), HasSubstr("is not an integer in"));
  }
}

TEST(DatasetTest, SplitIndicesOutOfRangeAreRefusedByRow) {
  const std::vector<std::pair<std::string, std::string>> bad_split = {
      {"index_train_0.txt", "0\n1\nnan\n"}, {"index_train_0.txt", "0\n1e300\n"},
      {"index_test_0.txt", "4\n"},          {"index_test_0.txt", "-1\n"},
      {"index_test_0.txt", "1.5\n"},        {"index_test_0.txt", "-inf\n"},
  };
  for (const auto& [file, text] : bad_split) {
    SCOPED_TRACE(file + ": " + text);
    auto uci = UciData::Load(UciFolder("bad_split", {{file, text}}));
    ASSERT_TRUE(uci.ok()) << uci.status();
    std::vector<int> train, test;
    const absl::Status s = uci->Split(0, &train, &test);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(file + " row "));
    EXPECT_THAT(s.message(), HasSubstr("is not an integer in [0, 3]"));
  }
  auto uci = UciData::Load(
      UciFolder("bad_split_row", {{"index_train_0.txt", "0\n1\nnan\n"}}));
  ASSERT_TRUE(uci.ok());
  std::vector<int> train, test;
  EXPECT_THAT(uci->Split(0, &train, &test).message(),
              HasSubstr("index_train_0.txt row 2: nan"));
}

TEST(DatasetTest, ClassLabelsMustBeSmallNonNegativeIntegers) {
  const double inf = std::numeric_limits<double>::infinity();
  for (double label : {-1.0, 0.5, 1e7, 1e300, std::nan(""), inf, -inf}) {
    SCOPED_TRACE(label);
    Eigen::MatrixXd table(2, 2);
    table << 1, 0, 2, label;
    auto d = MakeDataset(table, Task::kClassification, -1);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(d.status().message(), HasSubstr("row 1: class label"));
  }
  Eigen::MatrixXd table(2, 2);
  table << 1, 0, 2, 3;
  auto d = MakeDataset(table, Task::kClassification, -1);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->labels, (std::vector<int>{0, 3}));
  EXPECT_EQ(d->num_classes, 4);
}

}  // namespace
}  // namespace mcdrop
