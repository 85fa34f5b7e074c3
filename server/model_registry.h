// Copyright 2026 The mcdrop Authors.
//
// The models a server holds: single files given on the command line, and a
// model repository laid out as ROOT/<name>/<version>/model.safetensors, in the
// manner of TensorFlow Serving. Each model serves its highest available
// version unless a request pins one. Repository scans load new versions in the
// caller's thread (the server's poller), then swap them in atomically; removed
// versions and models are unloaded. Requests hold a shared_ptr to the version
// they started on, so a swap or unload never disturbs a request in flight.

#ifndef MCDROP_SERVER_MODEL_REGISTRY_H_
#define MCDROP_SERVER_MODEL_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/model.h"

namespace mcdrop::server {

// A loaded model version and where it came from. Immutable; shared by every
// request that uses it.
struct ServedModel {
  std::string name;
  int64_t version = 1;
  std::string source;  // file path
  absl::Time load_time;
  Model model;
};

enum class VersionState { kLoading, kAvailable, kFailed };
const char* VersionStateName(VersionState state);

// What the registry knows of one version, for ListModels / GetModelMetadata.
struct VersionStatus {
  int64_t version = 0;
  VersionState state = VersionState::kLoading;
  std::string reason;  // why it failed
  std::string source;
  absl::Time load_time = absl::InfinitePast();
};

// Thread-safe.
class ModelRegistry {
 public:
  // Every model loaded from now on computes in `precision` whatever its file
  // says (the server's --precision); unset: each file's own.
  void OverridePrecision(std::optional<Precision> precision) {
    precision_ = precision;
  }

  // Loads `path` as version 1 of model `name` (a --model flag).
  // InvalidArgument for a bad name or a duplicate; the loader's error for a
  // bad file.
  absl::Status Load(const std::string& name, const std::string& path);

  // One scan of the repository at `root`: loads every valid
  // <name>/<version>/model.safetensors not loaded yet (a failed version is
  // retried only when its file changes), unloads versions and models that are
  // gone. Names must match [A-Za-z0-9._-]{1,128} (not "." or ".."), versions
  // must be positive decimal integers, and a model file must resolve to a
  // path inside `root` (no symlink escapes); anything else is skipped with a
  // log line. `on_failure(name, version, reason)` is called for each version
  // that fails to load. NotFound if `root` is not a directory.
  using FailureCallback =
      std::function<void(const std::string&, int64_t, const std::string&)>;
  absl::Status SyncRepository(const std::string& root,
                              const FailureCallback& on_failure);

  // Model `name` (empty: the default) at `version` (0: the highest available).
  // NotFound naming what is missing, or why the version is not available.
  absl::StatusOr<std::shared_ptr<const ServedModel>> Get(
      const std::string& name, int64_t version) const;

  // The version each model serves by default, by name.
  std::vector<std::shared_ptr<const ServedModel>> List() const;
  // Every version of `name` the registry knows, ascending.
  std::vector<VersionStatus> Versions(const std::string& name) const;
  // Every model name, in order of first appearance.
  std::vector<std::string> Names() const;
  // The default model: `default_name` if set, else the first model added.
  std::string default_name() const;
  void set_default_name(const std::string& name);
  bool empty() const;

 private:
  // Model::Load, then the precision override.
  absl::StatusOr<Model> LoadFile(const std::string& path) const;
  std::optional<Precision> precision_;
  struct Entry {
    VersionStatus status;
    std::shared_ptr<const ServedModel> model;  // when available
    bool from_repository = false;
    std::string signature;  // file size and mtime, to retry a failed version
  };
  std::shared_ptr<const ServedModel> Latest(
      const std::map<int64_t, Entry>& versions) const;

  mutable absl::Mutex mu_;
  std::map<std::string, std::map<int64_t, Entry>> models_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  std::string default_name_ ABSL_GUARDED_BY(mu_);
};

// Whether `name` is a valid model name.
bool ValidModelName(const std::string& name);

// Splits a --model value: "NAME=PATH", or a bare "PATH" named after the file
// (its base name without the extension).
void ParseModelSpec(const std::string& spec, std::string* name,
                    std::string* path);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_MODEL_REGISTRY_H_
