// Copyright 2026 The mcdrop Authors.

#include "core/file_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

namespace mcdrop {
namespace {

TEST(ReadFileToStringTest, ReadsEveryByte) {
  const std::string path = ::testing::TempDir() + "/file_util_test.bin";
  const std::string bytes("line one\n\0binary\r\n", 18);
  std::ofstream(path, std::ios::binary) << bytes;
  auto got = ReadFileToString(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
}

TEST(ReadFileToStringTest, MissingFileIsNotFoundAndNamesThePath) {
  auto got = ReadFileToString("/nonexistent/dir/x.pem");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(),
              ::testing::HasSubstr("/nonexistent/dir/x.pem"));
}

}  // namespace
}  // namespace mcdrop
