// Copyright 2026 The mcdrop Authors.

#include "core/file_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>

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

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string TempFileOf(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

TEST(WriteFileAtomicallyTest, WritesAndReplacesLeavingNoTemporaryFile) {
  const std::string path = ::testing::TempDir() + "/file_util_write.bin";
  const std::string first("first\0content", 13), second = "second";
  ASSERT_TRUE(WriteFileAtomically(path, first).ok());
  EXPECT_EQ(*ReadFileToString(path), first);
  ASSERT_TRUE(WriteFileAtomically(path, second).ok());
  EXPECT_EQ(*ReadFileToString(path), second);
  EXPECT_FALSE(Exists(TempFileOf(path)));
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_EQ(*ReadFileToString(path), "");
  std::remove(path.c_str());
}

TEST(WriteFileAtomicallyTest, MissingDirectoryIsPermissionDeniedAndNamesIt) {
  const absl::Status s = WriteFileAtomically("/nonexistent/dir/x.bin", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("/nonexistent/dir/x.bin"));
}

TEST(WriteFileAtomicallyTest,
     FailedRenameKeepsTheOldFileAndRemovesTheTemporary) {
  // A directory cannot be replaced by a file: the rename fails.
  const std::string dir = ::testing::TempDir() + "/file_util_dir";
  ASSERT_TRUE(::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST);
  const absl::Status s = WriteFileAtomically(dir, "bytes");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("cannot rename"));
  EXPECT_FALSE(Exists(TempFileOf(dir)));
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace mcdrop
