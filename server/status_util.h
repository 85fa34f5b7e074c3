// Copyright 2026 The mcdrop Authors.
//
// The one place where absl::Status becomes grpc::Status (as TensorFlow
// Serving's grpc_status_util). The codes are numerically identical.

#ifndef MCDROP_SERVER_STATUS_UTIL_H_
#define MCDROP_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mcdrop::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The canonical name of a code, as used in the `code` metric label.
const char* CodeName(grpc::StatusCode code);

// gRPC cancels a call whose deadline passed, so a request the engine
// stopped as CANCELLED once `deadline` has passed is DEADLINE_EXCEEDED;
// any other status is returned as it is.
absl::Status DeadlineIfPassed(absl::Status status, absl::Time deadline);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_STATUS_UTIL_H_
