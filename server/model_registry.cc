// Copyright 2026 The mcdrop Authors.

#include "server/model_registry.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mcdrop::server {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.')) {
      return false;
    }
  }
  return name != "." && name != "..";
}

}  // namespace

void ParseModelSpec(const std::string& spec, std::string* name,
                    std::string* path) {
  const size_t eq = spec.find('=');
  if (eq != std::string::npos) {
    *name = spec.substr(0, eq);
    *path = spec.substr(eq + 1);
    return;
  }
  *path = spec;
  std::string base = spec.substr(spec.find_last_of('/') + 1);
  const size_t dot = base.find('.');
  *name = dot == std::string::npos ? base : base.substr(0, dot);
}

absl::Status ModelRegistry::Load(const std::string& name,
                                 const std::string& path) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model name \"", name,
                     "\" must be 1-128 characters of [A-Za-z0-9._-]"));
  }
  auto model = Model::Load(path);
  if (!model.ok()) return model.status();
  auto served = std::make_shared<ServedModel>(
      ServedModel{name, 1, path, absl::Now(), *std::move(model)});
  absl::MutexLock lock(&mu_);
  for (const auto& m : models_) {
    if (m->name == name) {
      return absl::InvalidArgumentError(
          absl::StrCat("model \"", name, "\" is given twice"));
    }
  }
  models_.push_back(std::move(served));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRegistry::Get(
    const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  if (models_.empty()) return absl::UnavailableError("no model is loaded");
  for (const auto& m : models_) {
    if (name.empty() ? m == models_.front() : m->name == name) {
      if (version != 0 && version != m->version) {
        return absl::NotFoundError(
            absl::StrCat("model \"", m->name, "\" has no version ", version));
      }
      return m;
    }
  }
  std::string known;
  for (const auto& m : models_)
    absl::StrAppend(&known, known.empty() ? "" : ", ", m->name);
  return absl::NotFoundError(absl::StrCat(
      "no model named \"", name.substr(0, 128), "\" (serving: ", known, ")"));
}

std::vector<std::shared_ptr<const ServedModel>> ModelRegistry::List() const {
  absl::MutexLock lock(&mu_);
  return models_;
}

std::string ModelRegistry::default_name() const {
  absl::MutexLock lock(&mu_);
  return models_.empty() ? "" : models_.front()->name;
}

bool ModelRegistry::empty() const {
  absl::MutexLock lock(&mu_);
  return models_.empty();
}

}  // namespace mcdrop::server
