// Copyright 2026 The mcdrop Authors.

#include "server/model_registry.h"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mcdrop::server {
namespace {

constexpr char kModelFile[] = "model.safetensors";

std::vector<std::string> ListDirectory(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) == nullptr ? "" : std::string(buf);
}

// A positive decimal integer without sign or leading zeros.
bool ParseVersion(const std::string& s, int64_t* v) {
  if (s.empty() || s.size() > 18 || s[0] == '0') return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, v) && *v > 0;
}

std::string Signature(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_size, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec);
}

}  // namespace

const char* VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kLoading:
      return "LOADING";
    case VersionState::kAvailable:
      return "AVAILABLE";
    case VersionState::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

bool ValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..")
    return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.')) {
      return false;
    }
  }
  return true;
}

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

absl::StatusOr<Model> ModelRegistry::LoadFile(const std::string& path) const {
  auto model = Model::Load(path);
  if (!model.ok() || !precision_ || model->precision() == *precision_) {
    return model;
  }
  return model->WithPrecision(*precision_);
}

absl::Status ModelRegistry::Load(const std::string& name,
                                 const std::string& path) {
  if (!ValidModelName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model name \"", name,
                     "\" must be 1-128 characters of [A-Za-z0-9._-]"));
  }
  auto model = LoadFile(path);
  if (!model.ok()) return model.status();
  auto served = std::make_shared<ServedModel>(
      ServedModel{name, 1, path, absl::Now(), *std::move(model)});
  absl::MutexLock lock(&mu_);
  if (models_.count(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", name, "\" is given twice"));
  }
  Entry e;
  e.status = {1, VersionState::kAvailable, "", path, served->load_time};
  e.model = std::move(served);
  models_[name][1] = std::move(e);
  order_.push_back(name);
  return absl::OkStatus();
}

absl::Status ModelRegistry::SyncRepository(const std::string& root,
                                           const FailureCallback& on_failure) {
  const std::string real_root = RealPath(root);
  if (real_root.empty() || !IsDirectory(real_root)) {
    return absl::NotFoundError(
        absl::StrCat("model repository \"", root, "\" is not a directory"));
  }
  // What the repository holds now: name -> version -> file.
  std::map<std::string, std::map<int64_t, std::string>> found;
  for (const std::string& name : ListDirectory(real_root)) {
    const std::string dir = real_root + "/" + name;
    if (!IsDirectory(dir)) continue;
    if (!ValidModelName(name)) {
      spdlog::warn("repository: skipping \"{}\": not a valid model name", name);
      continue;
    }
    for (const std::string& v : ListDirectory(dir)) {
      int64_t version;
      if (!ParseVersion(v, &version)) {
        // Temporary names (e.g. "3.tmp" while a version is being written) land
        // here.
        continue;
      }
      const std::string file = dir + "/" + v + "/" + kModelFile;
      const std::string real = RealPath(file);
      if (real.empty()) continue;  // no model file (yet)
      if (real.compare(0, real_root.size() + 1, real_root + "/") != 0) {
        spdlog::warn(
            "repository: skipping {}/{}: {} resolves outside the repository",
            name, v, kModelFile);
        continue;
      }
      found[name][version] = real;
    }
  }

  // Unload what is gone (repository entries only).
  {
    absl::MutexLock lock(&mu_);
    for (auto it = models_.begin(); it != models_.end();) {
      auto& versions = it->second;
      for (auto v = versions.begin(); v != versions.end();) {
        const bool gone =
            v->second.from_repository &&
            (!found.count(it->first) || !found[it->first].count(v->first));
        if (gone) {
          spdlog::info("repository: unloaded {} version {}", it->first,
                       v->first);
          v = versions.erase(v);
        } else {
          ++v;
        }
      }
      if (versions.empty()) {
        order_.erase(std::remove(order_.begin(), order_.end(), it->first),
                     order_.end());
        it = models_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Load what is new (or failed and changed), one version at a time, outside
  // the lock; serving continues meanwhile.
  for (const auto& [name, versions] : found) {
    for (const auto& [version, file] : versions) {
      const std::string signature = Signature(file);
      {
        absl::MutexLock lock(&mu_);
        auto& entries = models_[name];
        if (std::find(order_.begin(), order_.end(), name) == order_.end())
          order_.push_back(name);
        auto e = entries.find(version);
        if (e != entries.end()) {
          if (!e->second.from_repository)
            continue;  // a --model of the same name
          if (e->second.status.state != VersionState::kFailed ||
              e->second.signature == signature) {
            continue;
          }
        }
        Entry& entry = entries[version];
        entry.from_repository = true;
        entry.signature = signature;
        entry.status = {version, VersionState::kLoading, "", file,
                        absl::InfinitePast()};
      }
      auto model = LoadFile(file);
      absl::MutexLock lock(&mu_);
      auto mit = models_.find(name);
      if (mit == models_.end() || !mit->second.count(version)) continue;
      Entry& entry = mit->second[version];
      if (model.ok()) {
        entry.model = std::make_shared<ServedModel>(
            ServedModel{name, version, file, absl::Now(), *std::move(model)});
        entry.status.state = VersionState::kAvailable;
        entry.status.load_time = entry.model->load_time;
        spdlog::info("repository: loaded {} version {} ({} {})", name, version,
                     std::string(TaskName(entry.model->model.task())), file);
      } else {
        entry.status.state = VersionState::kFailed;
        entry.status.reason = std::string(model.status().message());
        spdlog::error("repository: {} version {} failed to load: {}", name,
                      version, entry.status.reason);
        if (on_failure) on_failure(name, version, entry.status.reason);
      }
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<const ServedModel> ModelRegistry::Latest(
    const std::map<int64_t, Entry>& versions) const {
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (it->second.status.state == VersionState::kAvailable)
      return it->second.model;
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRegistry::Get(
    const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  if (order_.empty()) {
    return name.empty() ? absl::UnavailableError("no model is loaded")
                        : absl::NotFoundError(absl::StrCat(
                              "no model named \"", name.substr(0, 128),
                              "\" (no model is loaded)"));
  }
  const std::string& want =
      !name.empty() ? name
                    : (!default_name_.empty() ? default_name_ : order_.front());
  auto it = models_.find(want);
  if (it == models_.end()) {
    std::string known;
    for (const auto& n : order_)
      absl::StrAppend(&known, known.empty() ? "" : ", ", n);
    return absl::NotFoundError(absl::StrCat(
        "no model named \"", want.substr(0, 128), "\" (serving: ", known, ")"));
  }
  if (version == 0) {
    auto latest = Latest(it->second);
    if (latest == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("model \"", want, "\" has no available version"));
    }
    return latest;
  }
  auto v = it->second.find(version);
  if (v == it->second.end()) {
    return absl::NotFoundError(
        absl::StrCat("model \"", want, "\" has no version ", version));
  }
  if (v->second.status.state != VersionState::kAvailable) {
    return absl::NotFoundError(absl::StrCat(
        "model \"", want, "\" version ", version, " is ",
        VersionStateName(v->second.status.state),
        v->second.status.reason.empty() ? "" : ": " + v->second.status.reason));
  }
  return v->second.model;
}

std::vector<std::shared_ptr<const ServedModel>> ModelRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const ServedModel>> out;
  for (const auto& name : order_) {
    auto latest = Latest(models_.at(name));
    if (latest != nullptr) out.push_back(std::move(latest));
  }
  return out;
}

std::vector<VersionStatus> ModelRegistry::Versions(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  std::vector<VersionStatus> out;
  auto it = models_.find(name);
  if (it == models_.end()) return out;
  for (const auto& [v, e] : it->second) out.push_back(e.status);
  return out;
}

std::vector<std::string> ModelRegistry::Names() const {
  absl::MutexLock lock(&mu_);
  return order_;
}

std::string ModelRegistry::default_name() const {
  absl::MutexLock lock(&mu_);
  if (!default_name_.empty()) return default_name_;
  return order_.empty() ? "" : order_.front();
}

void ModelRegistry::set_default_name(const std::string& name) {
  absl::MutexLock lock(&mu_);
  default_name_ = name;
}

bool ModelRegistry::empty() const {
  absl::MutexLock lock(&mu_);
  return order_.empty();
}

}  // namespace mcdrop::server
