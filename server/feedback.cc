// Copyright 2026 The mcdrop Authors.

#include "server/feedback.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "core/conformal.h"
#include "core/intervals.h"
#include "scoring/scoring.h"

namespace mcdrop::server {

using mcdrop::v1::FeedbackItem;
using mcdrop::v1::FeedbackRequest;
using mcdrop::v1::FeedbackResponse;
using mcdrop::v1::FeedbackResult;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Ids are echoed in results up to this length.
constexpr size_t kMaxEchoedId = 64;

// A bijection on 64 bits (splitmix64's finaliser): distinct counters give
// distinct nonces that do not look sequential.
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string LevelLabel(double level) { return absl::StrFormat("%g", level); }

// One scored observation: one regression output, or one classified row.
struct Observation {
  // -1: not available (no pass outputs kept, or no calibration).
  std::array<int8_t, kLevels> mixture_covered{-1, -1, -1, -1};
  std::array<int8_t, kLevels> conformal_covered{-1, -1, -1, -1};
  double pit = kNaN;
  double log_likelihood = kNaN;
  double squared_error = kNaN;
  // Classification.
  bool correct = false;
  double nll = kNaN, brier = kNaN, confidence = kNaN, mi = kNaN;
  std::array<int8_t, kLevels> set_covered{-1, -1, -1, -1};
  std::array<int, kLevels> set_size{};
};

}  // namespace

absl::Status ValidateFeedbackOptions(const FeedbackOptions& o) {
  auto bad = [](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("--", what));
  };
  if (o.store_bytes < 0) return bad("feedback_store_mb must be >= 0");
  if (!(o.max_age > absl::ZeroDuration())) {
    return bad("feedback_max_age must be positive");
  }
  constexpr int kMax = 1000000;
  if (o.window < 1 || o.window > kMax) {
    return bad("feedback_window must be in [1, 1000000]");
  }
  if (o.max_items < 1 || o.max_items > kMax) {
    return bad("feedback_max_items must be in [1, 1000000]");
  }
  if (o.max_points < 1 || o.max_points > kMax) {
    return bad("feedback_points must be in [1, 1000000]");
  }
  if (!(o.adaptive_rate >= 0 && o.adaptive_rate < 1)) {
    return bad("adaptive_conformal_rate must be in [0, 1)");
  }
  return absl::OkStatus();
}

std::string FormatPredictionId(int64_t millis, uint64_t nonce) {
  return absl::StrFormat("%012x-%016x", static_cast<uint64_t>(millis), nonce);
}

namespace {

// Parses "<12 hex>-<16 hex>:<row>".
bool ParseRowId(absl::string_view id, int64_t* millis, uint64_t* nonce,
                int* row) {
  if (id.size() < 31 || id.size() > 40 || id[12] != '-' || id[29] != ':') {
    return false;
  }
  uint64_t ms = 0, n = 0;
  uint32_t r = 0;
  for (char c : id.substr(0, 12)) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  for (char c : id.substr(13, 16)) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  if (!absl::SimpleHexAtoi(id.substr(0, 12), &ms) ||
      !absl::SimpleHexAtoi(id.substr(13, 16), &n) ||
      !absl::SimpleAtoi(id.substr(30), &r) || r > (1u << 30) ||
      !absl::ascii_isdigit(id[30])) {
    return false;
  }
  *millis = static_cast<int64_t>(ms);
  *nonce = n;
  *row = static_cast<int>(r);
  return true;
}

}  // namespace

// One model version: its figures, their gauges and its adaptation state.
struct FeedbackMonitor::Version {
  std::string name;
  int64_t version = 0;
  Task task = Task::kRegression;
  int outputs = 0;
  double noise_std = 0.0;  // regression: sqrt(1 / tau)
  ConformalScore score = ConformalScore::kNormalizedResidual;
  std::vector<std::vector<double>> calibration;  // empty: uncalibrated

  // Children (made once, when the version is first seen).
  prometheus::Counter* observations = nullptr;
  // [kind][level]: kind 0 mixture, 1 conformal (regression), 2 sets.
  std::array<std::array<prometheus::Counter*, kLevels>, 3> covered{};
  prometheus::Gauge* window_size = nullptr;
  std::array<std::array<prometheus::Gauge*, kLevels>, 2> coverage{};
  std::array<prometheus::Gauge*, kPitBins> pit{};
  prometheus::Gauge* log_likelihood = nullptr;
  prometheus::Gauge* rmse = nullptr;
  prometheus::Gauge* accuracy = nullptr;
  prometheus::Gauge* nll = nullptr;
  prometheus::Gauge* brier = nullptr;
  prometheus::Gauge* ece = nullptr;
  std::array<prometheus::Gauge*, kLevels> set_coverage{};
  std::array<prometheus::Gauge*, kLevels> set_size{};
  prometheus::Gauge* mi_auroc = nullptr;
  // [output][level] (regression) or [0][level]; with adaptation only.
  std::vector<std::array<prometheus::Gauge*, kLevels>> adapted_level;

  absl::Mutex mu;
  std::deque<Observation> window ABSL_GUARDED_BY(mu);
  // Adaptive conformal inference: the miscoverage level in force.
  std::vector<std::array<double, kLevels>> alpha ABSL_GUARDED_BY(mu);
  std::shared_ptr<const MonitoredQuantiles> quantiles ABSL_GUARDED_BY(mu);

  void Add(const Observation& o, int output, double rate, int window_cap);
  void Publish();
  std::shared_ptr<const MonitoredQuantiles> QuantilesLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

// One kept prediction.
struct FeedbackMonitor::Stored {
  std::shared_ptr<Version> version;
  int rows = 0;
  int outputs = 0;  // D, or classes
  int max_points = 0;
  // Regression: [B][D] mean then [B][D] std. Classification: [B][C]
  // probabilities, then [B] mutual information, then [B] predicted class.
  std::vector<double> values;
  std::vector<float> points;    // [B][D][max_points]
  std::vector<int32_t> counts;  // [B][D]: points kept (0: none)
  std::shared_ptr<const MonitoredQuantiles> quantiles;  // may be null
  std::vector<uint8_t> joined;                          // [B]
  int remaining = 0;  // rows without feedback yet
  int64_t bytes = 0;

  int64_t Bytes() const {
    return static_cast<int64_t>(
        sizeof(Stored) + 64 + values.capacity() * sizeof(double) +
        points.capacity() * sizeof(float) +
        counts.capacity() * sizeof(int32_t) + joined.capacity());
  }
};

FeedbackMonitor::FeedbackMonitor(const FeedbackOptions& options,
                                 prometheus::Registry* registry)
    : options_(options),
      nonce_key_(std::random_device{}() * 0x100000001ull ^
                 std::random_device{}()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  items_ = &BuildCounter()
                .Name("mcdrop_feedback_items_total")
                .Help(
                    "Feedback items by outcome (accepted, unknown_id, "
                    "expired, wrong_model, duplicate, invalid)")
                .Register(*registry);
  evictions_family_ = &BuildCounter()
                           .Name("mcdrop_feedback_evictions_total")
                           .Help(
                               "Predictions dropped from the feedback store "
                               "before feedback, by reason (size, age)")
                           .Register(*registry);
  evicted_for_size_ = &evictions_family_->Add({{"reason", "size"}});
  evicted_for_age_ = &evictions_family_->Add({{"reason", "age"}});
  auto& entries = BuildGauge()
                      .Name("mcdrop_feedback_store_predictions")
                      .Help("Predictions kept for feedback")
                      .Register(*registry);
  store_entries_ = &entries.Add({});
  auto& bytes = BuildGauge()
                    .Name("mcdrop_feedback_store_bytes")
                    .Help("Bytes the feedback store holds (estimate)")
                    .Register(*registry);
  store_bytes_gauge_ = &bytes.Add({});
  observations_ = &BuildCounter()
                       .Name("mcdrop_feedback_observations_total")
                       .Help(
                           "Observations joined with their prediction "
                           "(regression: per output)")
                       .Register(*registry);
  covered_ = &BuildCounter()
                  .Name("mcdrop_feedback_covered_total")
                  .Help(
                      "Observations inside the prediction's interval or "
                      "set, by kind (mixture, conformal, set) and level")
                  .Register(*registry);
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(*registry);
  };
  window_ = gauge("mcdrop_feedback_window_observations",
                  "Observations in the rolling window of the figures below");
  coverage_ = gauge("mcdrop_feedback_coverage",
                    "Rolling share of observations inside the interval, by "
                    "interval (mixture, conformal) and level");
  pit_ = gauge("mcdrop_feedback_pit",
               "Rolling PIT histogram: share of observations whose predictive "
               "CDF value falls in the bin ending at bin_upper");
  log_likelihood_ = gauge("mcdrop_feedback_log_likelihood",
                          "Rolling mean log-likelihood under the MC-dropout "
                          "predictive mixture");
  rmse_ = gauge("mcdrop_feedback_rmse", "Rolling RMSE of the predictive mean");
  accuracy_ = gauge("mcdrop_feedback_accuracy", "Rolling accuracy");
  nll_ = gauge("mcdrop_feedback_nll", "Rolling mean negative log-likelihood");
  brier_ = gauge("mcdrop_feedback_brier", "Rolling mean Brier score");
  ece_ = gauge("mcdrop_feedback_ece",
               "Rolling expected calibration error (10 bins)");
  set_coverage_ = gauge("mcdrop_feedback_set_coverage",
                        "Rolling share of labels inside the prediction set");
  set_size_ = gauge("mcdrop_feedback_set_size", "Rolling mean set size");
  mi_auroc_ = gauge("mcdrop_feedback_mi_auroc",
                    "Rolling AUROC of the mutual information for telling "
                    "wrong answers from right ones");
  adapted_level_ = gauge("mcdrop_conformal_adapted_level",
                         "Adaptive conformal inference: the calibration level "
                         "in force (1 - alpha_t) for each nominal level");
}

FeedbackMonitor::~FeedbackMonitor() = default;

std::shared_ptr<FeedbackMonitor::Version> FeedbackMonitor::VersionOf(
    const ServedModel& model) {
  absl::MutexLock lock(&versions_mu_);
  auto& slot = versions_[{model.name, model.version}];
  if (slot != nullptr) return slot;
  auto v = std::make_shared<Version>();
  const Model& m = model.model;
  v->name = model.name;
  v->version = model.version;
  v->task = m.task();
  v->outputs = m.output_size();
  v->noise_std = v->task == Task::kRegression ? 1.0 / std::sqrt(m.tau()) : 0;
  if (m.spec().calibration) {
    v->score = m.spec().calibration->score;
    v->calibration = m.spec().calibration->scores;
  }
  const std::map<std::string, std::string> labels = {
      {"model", model.name}, {"version", std::to_string(model.version)}};
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(labels.begin(), labels.end());
    return extra;
  };
  v->observations = &observations_->Add(labels);
  v->window_size = &window_->Add(labels);
  if (v->task == Task::kRegression) {
    const char* kinds[] = {"mixture", "conformal"};
    for (int k = 0; k < 2; ++k) {
      if (k == 1 && v->calibration.empty()) continue;
      for (int i = 0; i < kLevels; ++i) {
        const std::string level = LevelLabel(kMonitoredLevels[i]);
        v->covered[k][i] =
            &covered_->Add(with({{"kind", kinds[k]}, {"level", level}}));
        v->coverage[k][i] =
            &coverage_->Add(with({{"interval", kinds[k]}, {"level", level}}));
      }
    }
    for (int b = 0; b < kPitBins; ++b) {
      v->pit[b] = &pit_->Add(with(
          {{"bin_upper", LevelLabel(static_cast<double>(b + 1) / kPitBins)}}));
    }
    v->log_likelihood = &log_likelihood_->Add(labels);
    v->rmse = &rmse_->Add(labels);
  } else {
    v->accuracy = &accuracy_->Add(labels);
    v->nll = &nll_->Add(labels);
    v->brier = &brier_->Add(labels);
    v->ece = &ece_->Add(labels);
    v->mi_auroc = &mi_auroc_->Add(labels);
    if (!v->calibration.empty()) {
      for (int i = 0; i < kLevels; ++i) {
        const std::string level = LevelLabel(kMonitoredLevels[i]);
        v->covered[2][i] =
            &covered_->Add(with({{"kind", "set"}, {"level", level}}));
        v->set_coverage[i] = &set_coverage_->Add(with({{"level", level}}));
        v->set_size[i] = &set_size_->Add(with({{"level", level}}));
      }
    }
  }
  if (!v->calibration.empty()) {
    const int lists = static_cast<int>(v->calibration.size());
    std::array<double, kLevels> alpha{};
    for (int i = 0; i < kLevels; ++i) alpha[i] = 1.0 - kMonitoredLevels[i];
    absl::MutexLock vlock(&v->mu);
    v->alpha.assign(lists, alpha);
    v->quantiles = v->QuantilesLocked();
    if (options_.adaptive_rate > 0) {
      v->adapted_level.resize(lists);
      for (int d = 0; d < lists; ++d) {
        for (int i = 0; i < kLevels; ++i) {
          v->adapted_level[d][i] = &adapted_level_->Add(
              with({{"output", std::to_string(d)},
                    {"level", LevelLabel(kMonitoredLevels[i])}}));
          v->adapted_level[d][i]->Set(kMonitoredLevels[i]);
        }
      }
    }
  }
  v->Publish();  // NaN figures (not 0) until the first observation
  slot = v;
  return v;
}

std::shared_ptr<const MonitoredQuantiles>
FeedbackMonitor::Version::QuantilesLocked() {
  auto q = std::make_shared<MonitoredQuantiles>(calibration.size());
  for (size_t d = 0; d < calibration.size(); ++d) {
    for (int i = 0; i < kLevels; ++i)
      (*q)[d][i] = AdaptedQuantile(calibration[d], alpha[d][i]);
  }
  return q;
}

std::shared_ptr<const MonitoredQuantiles> FeedbackMonitor::Quantiles(
    const ServedModel& model) {
  if (!enabled() || !model.model.spec().calibration) return nullptr;
  std::shared_ptr<Version> v = VersionOf(model);
  absl::MutexLock lock(&v->mu);
  return v->quantiles;
}

void FeedbackMonitor::Prepare(const ServedModel& model, PredictPlan* plan) {
  if (!enabled() || plan->options.mode != PredictMode::kMonteCarlo ||
      plan->range) {
    return;  // a range of passes is not a prediction
  }
  plan->monitored = Quantiles(model);
  // A fixed-T regression keeps its first max_points passes; an adaptive one
  // (rows of their own T) keeps passes only when the client asked for them.
  if (model.model.task() == Task::kRegression && !plan->adaptive) {
    plan->options.keep_first_samples = options_.max_points;
  }
}

std::string FeedbackMonitor::Record(const ServedModel& model,
                                    const PredictPlan& plan,
                                    const AdaptivePrediction& answer) {
  const PredictOptions& opt = plan.options;
  if (!enabled() || opt.mode != PredictMode::kMonteCarlo || plan.range) {
    return "";
  }
  const Prediction& p = answer.prediction;
  auto s = std::make_unique<Stored>();
  s->version = VersionOf(model);
  s->rows = p.rows;
  s->outputs = p.outputs;
  s->quantiles = plan.monitored;
  const size_t BD = static_cast<size_t>(p.rows) * p.outputs;
  if (p.task == Task::kRegression) {
    s->values.resize(2 * BD);
    const double noise = 1.0 / model.model.tau();
    for (size_t i = 0; i < BD; ++i) {
      s->values[i] = p.mean[i];
      s->values[BD + i] = std::sqrt(p.model_variance[i] + noise);
    }
    // The passes the engine returned: all T (return_samples, intervals) or
    // the first keep_first_samples (Prepare); rows of their own (adaptive).
    const size_t kept_T = BD > 0 ? p.sample_values.size() / BD : 0;
    const bool fixed_samples =
        kept_T > 0 && kept_T * BD == p.sample_values.size();
    const bool row_samples =
        answer.row_samples.size() == static_cast<size_t>(p.rows);
    if (!opt.predictive_draws && (fixed_samples || row_samples)) {
      int T = static_cast<int>(kept_T);
      if (row_samples) {
        T = 0;
        for (const auto& v : answer.row_samples)
          T = std::max(T, static_cast<int>(v.size() / p.outputs));
      }
      s->max_points = std::max(1, std::min(options_.max_points, T));
      s->points.resize(BD * s->max_points);
      s->counts.resize(BD);
      for (int r = 0; r < p.rows; ++r) {
        for (int d = 0; d < p.outputs; ++d) {
          const size_t rd = static_cast<size_t>(r) * p.outputs + d;
          float* out = s->points.data() + rd * s->max_points;
          int kept = 0;
          if (row_samples) {
            const std::vector<float>& v = answer.row_samples[r];
            const int T = static_cast<int>(v.size() / p.outputs);
            if (T > 0) {
              kept = StratifiedPoints(v.data() + d, p.outputs, T, s->max_points,
                                      out);
            }
          } else {
            kept =
                StratifiedPoints(p.sample_values.data() + rd, BD,
                                 static_cast<int>(kept_T), s->max_points, out);
          }
          s->counts[rd] = static_cast<int32_t>(kept);
        }
      }
    }
  } else {
    s->values.assign(p.mean.begin(), p.mean.end());
    s->values.insert(s->values.end(), p.mutual_information.begin(),
                     p.mutual_information.end());
    s->values.insert(s->values.end(), p.predicted_class.begin(),
                     p.predicted_class.end());
  }
  s->joined.assign(p.rows, 0);
  s->remaining = p.rows;
  s->bytes = s->Bytes();
  const int64_t millis = absl::ToUnixMillis(absl::Now());
  const Key key{millis, Mix(counter_.fetch_add(1) ^ nonce_key_)};
  Insert(key, std::move(s));
  return FormatPredictionId(key.millis, key.nonce);
}

void FeedbackMonitor::Insert(Key key, std::unique_ptr<Stored> stored) {
  absl::MutexLock lock(&store_mu_);
  bytes_ += stored->bytes;
  store_.emplace(key, std::move(stored));  // nonces never repeat
  order_.push_back(key);
  EvictLocked(absl::FromUnixMillis(key.millis));
  store_entries_->Set(static_cast<double>(store_.size()));
  store_bytes_gauge_->Set(static_cast<double>(bytes_));
}

void FeedbackMonitor::EvictLocked(absl::Time now) {
  const int64_t oldest_kept = absl::ToUnixMillis(now - options_.max_age);
  while (!order_.empty()) {
    const Key k = order_.front();
    auto it = store_.find(k);
    const bool too_old = k.millis < oldest_kept;
    const bool too_big = bytes_ > options_.store_bytes;
    if (!too_old && !too_big) break;
    order_.pop_front();
    if (it->second->remaining > 0) {  // dropped before all its feedback
      (too_old ? evicted_for_age_ : evicted_for_size_)->Increment();
    }
    bytes_ -= it->second->bytes;
    evicted_until_millis_ = std::max(evicted_until_millis_, k.millis);
    store_.erase(it);
  }
}

int64_t FeedbackMonitor::stored_predictions() const {
  absl::MutexLock lock(&store_mu_);
  return static_cast<int64_t>(store_.size());
}

int64_t FeedbackMonitor::stored_bytes() const {
  absl::MutexLock lock(&store_mu_);
  return bytes_;
}

namespace {

const char* OutcomeLabel(FeedbackResult::Outcome o) {
  switch (o) {
    case FeedbackResult::ACCEPTED:
      return "accepted";
    case FeedbackResult::UNKNOWN_ID:
      return "unknown_id";
    case FeedbackResult::EXPIRED:
      return "expired";
    case FeedbackResult::WRONG_MODEL:
      return "wrong_model";
    case FeedbackResult::DUPLICATE:
      return "duplicate";
    case FeedbackResult::INVALID:
      return "invalid";
    default:
      return "unspecified";
  }
}

FeedbackResult Result(absl::string_view id, FeedbackResult::Outcome outcome,
                      std::string message) {
  FeedbackResult r;
  r.set_id(std::string(id.substr(0, kMaxEchoedId)));
  r.set_outcome(outcome);
  r.set_message(std::move(message));
  return r;
}

// What is wrong with `item` as an observation of a row of `task` with `n`
// outputs or classes ("" when nothing).
std::string CheckObservation(const FeedbackItem& item, Task task, int n) {
  if (task == Task::kRegression) {
    if (item.has_label())
      return "a regression prediction takes targets, not a label";
    if (item.targets_size() != n) {
      return absl::StrCat("the prediction has ", n, " output(s); ",
                          item.targets_size(), " target(s) given");
    }
    for (int d = 0; d < n; ++d) {
      if (!std::isfinite(item.targets(d))) {
        return absl::StrCat("target ", d, " is not a finite number");
      }
    }
    return "";
  }
  if (item.targets_size() > 0)
    return "a classification takes a label, not targets";
  if (!item.has_label()) return "no label given";
  if (item.label() < 0 || item.label() >= n) {
    return absl::StrCat("label ", item.label(),
                        " is not a class of this model (0 to ", n - 1, ")");
  }
  return "";
}

}  // namespace

void FeedbackMonitor::CountItems(const std::string& model,
                                 const std::array<int, kOutcomes>& counts) {
  // Only model names that were predicted from get their own label.
  std::string label;
  {
    absl::MutexLock lock(&versions_mu_);
    auto it =
        versions_.lower_bound({model, std::numeric_limits<int64_t>::min()});
    if (it != versions_.end() && it->first.first == model) label = model;
  }
  absl::MutexLock lock(&items_mu_);
  for (int outcome = 0; outcome < kOutcomes; ++outcome) {
    if (counts[outcome] == 0) continue;
    auto& slot = item_counters_[{label, outcome}];
    if (slot == nullptr) {
      slot = &items_->Add(
          {{"model", label},
           {"outcome",
            OutcomeLabel(static_cast<FeedbackResult::Outcome>(outcome))}});
    }
    slot->Increment(counts[outcome]);
  }
}

namespace {

// Scores one regression output of a stored row against y.
Observation ScoreOutput(double y, double mean, double std, const float* points,
                        int count, double noise_std,
                        const std::array<double, kLevels>* q,
                        IntervalScratch* scratch) {
  Observation o;
  o.squared_error = (y - mean) * (y - mean);
  if (count > 0) {
    std::array<IntervalBounds, kLevels> b;
    PredictiveIntervals(points, 1, count, noise_std * noise_std,
                        kMonitoredLevels, b.data(), scratch);
    for (int i = 0; i < kLevels; ++i)
      o.mixture_covered[i] = b[i].lower <= y && y <= b[i].upper;
    const std::vector<double> pts(points, points + count);
    o.pit = MixtureCdf(pts, noise_std, y);
    const float yf = static_cast<float>(y);
    o.log_likelihood = SampleLogLikelihood(points, 1, count, 1, &yf,
                                           1.0 / (noise_std * noise_std));
  }
  if (q != nullptr) {
    for (int i = 0; i < kLevels; ++i) {
      o.conformal_covered[i] =
          std::isinf((*q)[i]) || std::abs(y - mean) <= (*q)[i] * std;
    }
  }
  return o;
}

Observation ScoreClass(int label, absl::Span<const double> probs, double mi,
                       int predicted, ConformalScore score,
                       const std::array<double, kLevels>* q) {
  Observation o;
  o.correct = predicted == label;
  o.nll = -std::log(std::max(probs[label], 1e-300));
  o.brier = BrierScore(probs.data(), static_cast<int>(probs.size()), label);
  o.confidence = *std::max_element(probs.begin(), probs.end());
  o.mi = mi;
  if (q != nullptr) {
    const double s = ClassScore(score, probs, label);
    for (int i = 0; i < kLevels; ++i) {
      o.set_covered[i] = s <= (*q)[i];
      o.set_size[i] =
          static_cast<int>(PredictionSet(score, probs, (*q)[i]).size());
    }
  }
  return o;
}

}  // namespace

void FeedbackMonitor::Version::Add(const Observation& o, int output,
                                   double rate, int window_cap) {
  observations->Increment();
  const int kind0 = task == Task::kRegression ? 0 : 2;
  for (int i = 0; i < kLevels; ++i) {
    if (task == Task::kRegression) {
      if (o.mixture_covered[i] == 1) covered[0][i]->Increment();
      if (o.conformal_covered[i] == 1) covered[1][i]->Increment();
    } else if (o.set_covered[i] == 1) {
      covered[kind0][i]->Increment();
    }
  }
  absl::MutexLock lock(&mu);
  window.push_back(o);
  while (static_cast<int>(window.size()) > window_cap) window.pop_front();
  if (rate <= 0 || calibration.empty()) return;
  const auto& hit =
      task == Task::kRegression ? o.conformal_covered : o.set_covered;
  const int d = task == Task::kRegression ? output : 0;
  if (d >= static_cast<int>(alpha.size())) return;
  for (int i = 0; i < kLevels; ++i) {
    if (hit[i] < 0) continue;
    alpha[d][i] =
        AciStep(alpha[d][i], 1.0 - kMonitoredLevels[i], rate, hit[i] == 0);
    adapted_level[d][i]->Set(1.0 - alpha[d][i]);
  }
  quantiles = QuantilesLocked();
}

void FeedbackMonitor::Version::Publish() {
  std::vector<Observation> w;
  {
    absl::MutexLock lock(&mu);
    w.assign(window.begin(), window.end());
  }
  window_size->Set(static_cast<double>(w.size()));
  auto mean_of = [&](auto field) {
    double sum = 0;
    int n = 0;
    for (const Observation& o : w) {
      const double v = field(o);
      if (!std::isnan(v)) {
        sum += v;
        ++n;
      }
    }
    return n > 0 ? sum / n : kNaN;
  };
  auto share = [&](auto flag) {
    return mean_of([&](const Observation& o) {
      const int8_t f = flag(o);
      return f < 0 ? kNaN : static_cast<double>(f);
    });
  };
  if (task == Task::kRegression) {
    for (int i = 0; i < kLevels; ++i) {
      coverage[0][i]->Set(
          share([i](const Observation& o) { return o.mixture_covered[i]; }));
      if (coverage[1][i] != nullptr) {
        coverage[1][i]->Set(share(
            [i](const Observation& o) { return o.conformal_covered[i]; }));
      }
    }
    std::array<double, kPitBins> bins{};
    double n = 0;
    for (const Observation& o : w) {
      if (std::isnan(o.pit)) continue;
      bins[std::min(kPitBins - 1, static_cast<int>(o.pit * kPitBins))] += 1;
      n += 1;
    }
    for (int b = 0; b < kPitBins; ++b) pit[b]->Set(n > 0 ? bins[b] / n : kNaN);
    log_likelihood->Set(
        mean_of([](const Observation& o) { return o.log_likelihood; }));
    rmse->Set(std::sqrt(
        mean_of([](const Observation& o) { return o.squared_error; })));
    return;
  }
  accuracy->Set(
      mean_of([](const Observation& o) { return o.correct ? 1.0 : 0.0; }));
  nll->Set(mean_of([](const Observation& o) { return o.nll; }));
  brier->Set(mean_of([](const Observation& o) { return o.brier; }));
  CalibrationBins bins(kEceBins);
  std::vector<double> mi;
  std::vector<uint8_t> wrong;
  for (const Observation& o : w) {
    // A prediction whose probabilities overflowed has no confidence.
    if (!std::isnan(o.confidence)) bins.Add(o.confidence, o.correct);
    mi.push_back(o.mi);
    wrong.push_back(!o.correct);
  }
  ece->Set(bins.count() > 0 ? bins.ExpectedCalibrationError() : kNaN);
  mi_auroc->Set(Auroc(mi, wrong));
  for (int i = 0; i < kLevels; ++i) {
    if (set_coverage[i] == nullptr) continue;
    set_coverage[i]->Set(
        share([i](const Observation& o) { return o.set_covered[i]; }));
    set_size[i]->Set(mean_of([i](const Observation& o) {
      return o.set_covered[i] < 0 ? kNaN : static_cast<double>(o.set_size[i]);
    }));
  }
}

FeedbackResult FeedbackMonitor::Join(
    const FeedbackRequest& request, const FeedbackItem& item,
    std::vector<std::shared_ptr<Version>>* touched) {
  const std::string& id = item.id();
  int64_t millis = 0;
  uint64_t nonce = 0;
  int row = 0;
  if (!ParseRowId(id, &millis, &nonce, &row)) {
    return Result(id, FeedbackResult::UNKNOWN_ID,
                  "not a row id this server gives (\"<prediction_id>:<row>\")");
  }
  // What is needed of the row, copied out of the store.
  std::shared_ptr<Version> v;
  std::vector<double> values;
  std::vector<float> points;
  std::vector<int32_t> counts;
  std::shared_ptr<const MonitoredQuantiles> q;
  int n = 0;
  {
    absl::MutexLock lock(&store_mu_);
    EvictLocked(absl::Now());
    auto it = store_.find(Key{millis, nonce});
    if (it == store_.end()) {
      if (millis <= evicted_until_millis_ ||
          millis < absl::ToUnixMillis(absl::Now() - options_.max_age)) {
        return Result(id, FeedbackResult::EXPIRED,
                      "the prediction is no longer kept (the store keeps "
                      "predictions for a limited time and size)");
      }
      return Result(id, FeedbackResult::UNKNOWN_ID,
                    "no prediction with this id is kept here");
    }
    Stored& s = *it->second;
    if (s.version->name != request.model() ||
        (request.version() != 0 && request.version() != s.version->version)) {
      return Result(id, FeedbackResult::WRONG_MODEL,
                    absl::StrCat("the id is of model \"", s.version->name,
                                 "\" version ", s.version->version));
    }
    if (row >= s.rows) {
      return Result(id, FeedbackResult::UNKNOWN_ID,
                    absl::StrCat("the prediction has ", s.rows, " row(s)"));
    }
    if (s.joined[row]) {
      return Result(id, FeedbackResult::DUPLICATE,
                    "this row already had feedback");
    }
    n = s.outputs;
    if (std::string why = CheckObservation(item, s.version->task, n);
        !why.empty()) {
      return Result(id, FeedbackResult::INVALID, why);
    }
    v = s.version;
    q = s.quantiles;
    const size_t B = s.rows, r = row;
    if (v->task == Task::kRegression) {
      for (int d = 0; d < n; ++d) values.push_back(s.values[r * n + d]);
      for (int d = 0; d < n; ++d) values.push_back(s.values[B * n + r * n + d]);
      if (!s.counts.empty()) {
        counts.assign(s.counts.begin() + r * n, s.counts.begin() + (r + 1) * n);
        points.assign(s.points.begin() + r * n * s.max_points,
                      s.points.begin() + (r + 1) * n * s.max_points);
      }
    } else {
      values.assign(s.values.begin() + r * n, s.values.begin() + (r + 1) * n);
      values.push_back(s.values[B * n + r]);      // mutual information
      values.push_back(s.values[B * n + B + r]);  // predicted class
    }
    s.joined[row] = 1;
    if (--s.remaining == 0) {
      // Every row has its feedback: keep only what says so (a later item
      // for it is a DUPLICATE), until it leaves with age or size.
      std::vector<double>().swap(s.values);
      std::vector<float>().swap(s.points);
      std::vector<int32_t>().swap(s.counts);
      s.quantiles = nullptr;
      bytes_ -= s.bytes;
      s.bytes = s.Bytes();
      bytes_ += s.bytes;
      store_bytes_gauge_->Set(static_cast<double>(bytes_));
    }
  }
  const bool have_q = q != nullptr && !q->empty();
  if (v->task == Task::kRegression) {
    IntervalScratch scratch;
    const int K = counts.empty() ? 0 : static_cast<int>(points.size()) / n;
    for (int d = 0; d < n; ++d) {
      const Observation o = ScoreOutput(
          item.targets(d), values[d], values[n + d],
          K > 0 ? points.data() + static_cast<size_t>(d) * K : nullptr,
          counts.empty() ? 0 : counts[d], v->noise_std,
          have_q ? &(*q)[d] : nullptr, &scratch);
      v->Add(o, d, options_.adaptive_rate, options_.window);
    }
  } else {
    const Observation o = ScoreClass(
        item.label(), absl::MakeConstSpan(values.data(), n), values[n],
        static_cast<int>(values[n + 1]), v->score, have_q ? &(*q)[0] : nullptr);
    v->Add(o, 0, options_.adaptive_rate, options_.window);
  }
  if (std::find(touched->begin(), touched->end(), v) == touched->end()) {
    touched->push_back(v);
  }
  return Result(id, FeedbackResult::ACCEPTED, "");
}

absl::Status FeedbackMonitor::Submit(const FeedbackRequest& request,
                                     FeedbackResponse* response) {
  if (!enabled()) {
    return absl::FailedPreconditionError(
        "this server keeps no predictions for feedback (--feedback_store_mb "
        "is 0)");
  }
  if (request.model().empty()) {
    return absl::InvalidArgumentError(
        "a Feedback request names the model its predictions came from");
  }
  if (request.items_size() > options_.max_items) {
    return absl::InvalidArgumentError(
        absl::StrCat("a Feedback request has at most ", options_.max_items,
                     " items; this one has ", request.items_size()));
  }
  std::vector<std::shared_ptr<Version>> touched;
  std::array<int, kOutcomes> counts{};
  for (const FeedbackItem& item : request.items()) {
    FeedbackResult r = Join(request, item, &touched);
    ++counts[r.outcome()];
    *response->add_results() = std::move(r);
  }
  CountItems(request.model(), counts);
  response->set_accepted(counts[FeedbackResult::ACCEPTED]);
  for (const auto& v : touched) v->Publish();
  return absl::OkStatus();
}

}  // namespace mcdrop::server
