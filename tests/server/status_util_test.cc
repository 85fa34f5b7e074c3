// Copyright 2026 The mcdrop Authors.
//
// The status conversion and the code names of the `code` metric label.

#include "server/status_util.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mcdrop::server {
namespace {

TEST(CodeNameTest, EveryCodeKeepsItsCanonicalName) {
  // The label values dashboards and alert rules match on
  // (deploy/prometheus/mcdrop.rules.yml); they must never change.
  const std::vector<std::string> want = {"OK",
                                         "CANCELLED",
                                         "UNKNOWN",
                                         "INVALID_ARGUMENT",
                                         "DEADLINE_EXCEEDED",
                                         "NOT_FOUND",
                                         "ALREADY_EXISTS",
                                         "PERMISSION_DENIED",
                                         "RESOURCE_EXHAUSTED",
                                         "FAILED_PRECONDITION",
                                         "ABORTED",
                                         "OUT_OF_RANGE",
                                         "UNIMPLEMENTED",
                                         "INTERNAL",
                                         "UNAVAILABLE",
                                         "DATA_LOSS",
                                         "UNAUTHENTICATED"};
  for (int c = 0; c < static_cast<int>(want.size()); ++c) {
    EXPECT_EQ(CodeName(static_cast<grpc::StatusCode>(c)), want[c]) << c;
  }
  EXPECT_STREQ(CodeName(grpc::StatusCode::RESOURCE_EXHAUSTED),
               "RESOURCE_EXHAUSTED");
}

TEST(CodeNameTest, UnknownNumbersAreUnknown) {
  EXPECT_STREQ(CodeName(static_cast<grpc::StatusCode>(17)), "UNKNOWN");
  EXPECT_STREQ(CodeName(static_cast<grpc::StatusCode>(-1)), "UNKNOWN");
  EXPECT_STREQ(CodeName(static_cast<grpc::StatusCode>(1000)), "UNKNOWN");
}

TEST(ToGrpcStatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status s = ToGrpcStatus(absl::NotFoundError("no model \"x\""));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no model \"x\"");
}

}  // namespace
}  // namespace mcdrop::server
