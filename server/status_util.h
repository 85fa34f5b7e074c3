// Copyright 2026 The mcdrop Authors.
//
// The one place where absl::Status becomes grpc::Status (as TensorFlow
// Serving's grpc_status_util). The codes are numerically identical.

#ifndef MCDROP_SERVER_STATUS_UTIL_H_
#define MCDROP_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace mcdrop::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The canonical name of a code, as used in the `code` metric label.
const char* CodeName(grpc::StatusCode code);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_STATUS_UTIL_H_
