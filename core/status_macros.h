// Copyright 2026 The mcdrop Authors.
//
// The two status macros abseil 20220623 does not ship. They follow the
// semantics of the macros of the same purpose in TensorFlow and gRPC:
//
//   MCDROP_RETURN_IF_ERROR(expr);        // returns the status if !ok()
//   MCDROP_ASSIGN_OR_RETURN(lhs, expr);  // lhs = *std::move(expr) or return
//
// Both evaluate `expr` exactly once. They may be used only in functions that
// return absl::Status or absl::StatusOr<T>.

#ifndef MCDROP_CORE_STATUS_MACROS_H_
#define MCDROP_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MCDROP_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status mcdrop_status_ = (expr);          \
    if (!mcdrop_status_.ok()) return mcdrop_status_; \
  } while (false)

#define MCDROP_STATUS_CONCAT_INNER_(x, y) x##y
#define MCDROP_STATUS_CONCAT_(x, y) MCDROP_STATUS_CONCAT_INNER_(x, y)

#define MCDROP_ASSIGN_OR_RETURN(lhs, expr) \
  MCDROP_ASSIGN_OR_RETURN_IMPL_(           \
      MCDROP_STATUS_CONCAT_(mcdrop_statusor_, __LINE__), lhs, expr)

#define MCDROP_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#endif  // MCDROP_CORE_STATUS_MACROS_H_
