// Copyright 2026 The mcdrop Authors.

#ifndef MCDROP_SERVER_MODEL_REGISTRY_H_
#define MCDROP_SERVER_MODEL_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/model.h"

namespace mcdrop::server {

// A loaded model and where it came from. Immutable; shared by every request
// that uses it, so a request keeps its model alive until it finishes.
struct ServedModel {
  std::string name;
  int64_t version = 1;
  std::string source;  // file path
  absl::Time load_time;
  Model model;
};

// The models a server holds, by name. Thread-safe.
class ModelRegistry {
 public:
  // Loads `path` as model `name`. The first model added is the default.
  // InvalidArgument for a bad name or a duplicate; the loader's error for a
  // bad file.
  absl::Status Load(const std::string& name, const std::string& path);

  // The model `name` (empty: the default) at `version` (0: newest).
  // NotFound naming what is missing.
  absl::StatusOr<std::shared_ptr<const ServedModel>> Get(
      const std::string& name, int64_t version) const;

  std::vector<std::shared_ptr<const ServedModel>> List() const;
  std::string default_name() const;
  bool empty() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<const ServedModel>> models_ ABSL_GUARDED_BY(mu_);
};

// Splits a --model value: "NAME=PATH", or a bare "PATH" named after the file
// (its base name without the extension).
void ParseModelSpec(const std::string& spec, std::string* name,
                    std::string* path);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_MODEL_REGISTRY_H_
