// Copyright 2026 The mcdrop Authors.

#include "core/conformal.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mcdrop {
namespace {

constexpr absl::string_view kMethod = "split_conformal";

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("metadata \"calibration\": ", field, ": ", what));
}

// Classes by decreasing probability, ties by index.
std::vector<int> Ranked(absl::Span<const double> probs) {
  std::vector<int> order(probs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return probs[a] > probs[b]; });
  return order;
}

absl::Status CheckScoreList(const std::vector<double>& list, size_t index,
                            size_t rows) {
  const std::string field = absl::StrCat("scores[", index, "]");
  if (list.empty()) return FieldError(field, "no scores");
  if (list.size() != rows) {
    return FieldError(
        field, absl::StrCat(list.size(), " scores, scores[0] has ", rows));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    if (!std::isfinite(list[i]) || list[i] < 0) {
      return FieldError(field, absl::StrCat("score ", i, " (", list[i],
                                            ") is not a finite number >= 0"));
    }
    if (i > 0 && list[i] < list[i - 1]) {
      return FieldError(field, absl::StrCat("not sorted at ", i));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view ConformalScoreName(ConformalScore score) {
  switch (score) {
    case ConformalScore::kNormalizedResidual:
      return "normalized_residual";
    case ConformalScore::kLac:
      return "lac";
    case ConformalScore::kAps:
      return "aps";
  }
  return "?";
}

absl::StatusOr<ConformalScore> ParseConformalScore(absl::string_view name) {
  for (ConformalScore s : {ConformalScore::kNormalizedResidual,
                           ConformalScore::kLac, ConformalScore::kAps}) {
    if (name == ConformalScoreName(s)) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown conformal score \"", name,
                   "\" (normalized_residual, lac or aps)"));
}

bool Calibration::operator==(const Calibration& o) const {
  return score == o.score && samples == o.samples && seed == o.seed &&
         source == o.source && created == o.created && scores == o.scores;
}

double ConformalQuantile(absl::Span<const double> sorted, double level) {
  if (sorted.empty() || !(level > 0 && level < 1))
    return std::numeric_limits<double>::infinity();
  const double n = static_cast<double>(sorted.size());
  // (n + 1) level is often an integer in exact arithmetic (n = 19, level
  // 0.95): do not let rounding push the rank one up.
  const double rank = std::ceil((n + 1) * level - 1e-9);
  if (rank > n) return std::numeric_limits<double>::infinity();
  return sorted[static_cast<size_t>(std::max(rank, 1.0)) - 1];
}

double NormalizedResidual(double y, double mean, double std) {
  return std::abs(y - mean) / std;
}

double ClassScore(ConformalScore score, absl::Span<const double> probs, int y) {
  // p may round a hair above 1: scores stay >= 0 (sets are unchanged, as
  // every q >= 0).
  if (score == ConformalScore::kLac) return std::max(0.0, 1.0 - probs[y]);
  double mass = 0;
  for (int k : Ranked(probs)) {
    mass += probs[k];
    if (k == y) break;
  }
  return std::min(mass, 1.0);
}

std::vector<int> PredictionSet(ConformalScore score,
                               absl::Span<const double> probs, double q) {
  std::vector<int> set;
  double mass = 0;
  for (int k : Ranked(probs)) {
    if (score == ConformalScore::kLac) {
      if (1.0 - probs[k] <= q) set.push_back(k);
      continue;
    }
    mass += probs[k];
    if (std::min(mass, 1.0) > q) break;
    set.push_back(k);
  }
  return set;
}

std::string CalibrationToJson(const Calibration& c) {
  nlohmann::ordered_json j;
  j["method"] = std::string(kMethod);
  j["score"] = std::string(ConformalScoreName(c.score));
  j["samples"] = c.samples;
  j["seed"] = c.seed;
  j["rows"] = c.rows();
  j["source"] = c.source;
  j["created"] = c.created;
  j["scores"] = c.scores;
  return j.dump();
}

absl::Status ValidateCalibration(const Calibration& c) {
  if (c.scores.empty()) return FieldError("scores", "no score lists");
  for (size_t i = 0; i < c.scores.size(); ++i) {
    if (absl::Status s = CheckScoreList(c.scores[i], i, c.scores[0].size());
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Calibration> ParseCalibration(absl::string_view json) {
  if (json.size() > kMaxCalibrationJsonBytes) {
    return FieldError("value", absl::StrCat(json.size(),
                                            " bytes exceed the "
                                            "limit of ",
                                            kMaxCalibrationJsonBytes));
  }
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return FieldError("value", "not a JSON object");
  auto get = [&](const char* key) -> const nlohmann::json* {
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
  };
  const nlohmann::json* method = get("method");
  if (method == nullptr || !method->is_string() ||
      method->get<std::string>() != kMethod) {
    return FieldError("method", "must be \"split_conformal\"");
  }
  Calibration c;
  const nlohmann::json* score = get("score");
  if (score == nullptr || !score->is_string())
    return FieldError("score", "missing");
  auto parsed = ParseConformalScore(score->get<std::string>());
  if (!parsed.ok()) return FieldError("score", parsed.status().message());
  c.score = *parsed;
  const nlohmann::json* samples = get("samples");
  if (samples == nullptr || !samples->is_number_integer() ||
      samples->get<int64_t>() < 1 || samples->get<int64_t>() > (1 << 30)) {
    return FieldError("samples", "must be an integer T >= 1");
  }
  c.samples = samples->get<int>();
  if (const nlohmann::json* seed = get("seed")) {
    if (!seed->is_number_unsigned())
      return FieldError("seed", "must be an integer >= 0");
    c.seed = seed->get<uint64_t>();
  }
  for (auto [key, field] :
       {std::pair<const char*, std::string*>{"source", &c.source},
        {"created", &c.created}}) {
    if (const nlohmann::json* v = get(key)) {
      if (!v->is_string()) return FieldError(key, "must be a string");
      *field = v->get<std::string>();
    }
  }
  const nlohmann::json* scores = get("scores");
  if (scores == nullptr || !scores->is_array() || scores->empty())
    return FieldError("scores", "must be a non-empty list of score lists");
  for (const nlohmann::json& list : *scores) {
    if (!list.is_array()) return FieldError("scores", "must hold lists");
    std::vector<double> values;
    values.reserve(list.size());
    for (const nlohmann::json& v : list) {
      if (!v.is_number()) return FieldError("scores", "must hold numbers");
      values.push_back(v.get<double>());
    }
    c.scores.push_back(std::move(values));
  }
  if (absl::Status s = ValidateCalibration(c); !s.ok()) return s;
  if (const nlohmann::json* rows = get("rows")) {
    if (!rows->is_number_integer() || rows->get<int64_t>() != c.rows()) {
      return FieldError("rows", absl::StrCat("must equal the scores per list (",
                                             c.rows(), ")"));
    }
  }
  return c;
}

double AdaptedQuantile(absl::Span<const double> sorted, double alpha) {
  if (alpha >= 1.0) return 0.0;
  if (alpha <= 0.0) return std::numeric_limits<double>::infinity();
  return ConformalQuantile(sorted, 1.0 - alpha);
}

}  // namespace mcdrop
