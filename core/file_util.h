// Copyright 2026 The mcdrop Authors.
//
// Reading and writing whole files, with errors as absl::Status. The one place
// in the tree that opens files by path for their whole content.

#ifndef MCDROP_CORE_FILE_UTIL_H_
#define MCDROP_CORE_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mcdrop {

// The bytes of the file at `path`. NotFound (naming the path and the
// system's reason) if it cannot be opened, DataLoss if reading fails.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `bytes` to `path` through a temporary file beside it
// ("<path>.tmp.<pid>") and a rename, so that a reader never sees a
// half-written file: `path` holds either its old content or all of `bytes`.
// PermissionDenied (naming the file and the system's reason) if the
// temporary file cannot be created or renamed, DataLoss if writing fails;
// the temporary file is removed on every error. Not safe for two writers of
// one path in the same process.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

}  // namespace mcdrop

#endif  // MCDROP_CORE_FILE_UTIL_H_
