// Copyright 2026 The mcdrop Authors.
//
// Reading a whole file, with errors as absl::Status.

#ifndef MCDROP_CORE_FILE_UTIL_H_
#define MCDROP_CORE_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"

namespace mcdrop {

// The bytes of the file at `path`. NotFound (naming the path and the
// system's reason) if it cannot be opened, DataLoss if reading fails.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace mcdrop

#endif  // MCDROP_CORE_FILE_UTIL_H_
