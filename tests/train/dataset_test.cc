// Copyright 2026 The mcdrop Authors.

#include "train/dataset.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mcdrop {
namespace {

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

}  // namespace
}  // namespace mcdrop
