// Copyright 2026 The mcdrop Authors.

#include "server/status_util.h"

#include <array>
#include <string>

#include "absl/time/clock.h"

namespace mcdrop::server {
namespace {

// OK (0) to UNAUTHENTICATED (16): every code gRPC and absl define.
constexpr int kNumCodes = 17;

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

const char* CodeName(grpc::StatusCode code) {
  // absl::StatusCodeToString names the codes; gRPC's have the same numbers.
  // Computed once, so that the names outlive every caller.
  static const std::array<std::string, kNumCodes>* const kNames = [] {
    auto* names = new std::array<std::string, kNumCodes>;
    for (int c = 0; c < kNumCodes; ++c) {
      (*names)[c] = absl::StatusCodeToString(static_cast<absl::StatusCode>(c));
    }
    return names;
  }();
  const int c = static_cast<int>(code);
  return c >= 0 && c < kNumCodes ? (*kNames)[c].c_str() : "UNKNOWN";
}

absl::Status DeadlineIfPassed(absl::Status status, absl::Time deadline) {
  if (absl::IsCancelled(status) && absl::Now() >= deadline) {
    return absl::DeadlineExceededError(
        "the deadline passed during the computation");
  }
  return status;
}

}  // namespace mcdrop::server
