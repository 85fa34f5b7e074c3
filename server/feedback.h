// Copyright 2026 The mcdrop Authors.
//
// Feedback: is the uncertainty still honest? (docs/calibration.md,
// "Feedback in production").
//
// Every Monte-Carlo prediction is kept for a while in a bounded store,
// under an id the response carries (a prediction id, and "<id>:<row>" per
// row). A Feedback call brings what was observed for some rows; each is
// joined with what the server predicted and scored, and every model version
// keeps rolling figures over its last `window` observations:
// - regression: coverage of the mixture and conformal intervals at the
//   monitored levels (50, 80, 90, 95%), the PIT histogram, the test
//   log-likelihood under the MC-dropout mixture, the RMSE;
// - classification: accuracy, NLL, Brier score, ECE, prediction-set
//   coverage and size, and the AUROC of the mutual information for telling
//   wrong answers from right ones.
// Exported to Prometheus (families made once, children once per version).
//
// With `adaptive_rate` > 0, a calibrated version's conformal level at each
// monitored level moves with the misses it sees (adaptive conformal
// inference, Gibbs & Candes 2021): its responses' conformal intervals and
// sets at those levels then use the adapted quantile, which keeps coverage
// near nominal when the data drift.
//
// The store is bounded by bytes and age; the oldest predictions are
// evicted first and counted. A regression row keeps at most `max_points`
// of its T pass outputs (the first ones: an i.i.d. sample of the T), so its
// mixture figures are those of the served intervals up to T = max_points
// and of a max_points-pass sample of the same predictive beyond.

#ifndef MCDROP_SERVER_FEEDBACK_H_
#define MCDROP_SERVER_FEEDBACK_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/adaptive.h"
#include "core/engine.h"
#include "mcdrop/v1/inference.pb.h"
#include "server/model_registry.h"
#include "server/request.h"

namespace mcdrop::server {

// kMonitoredLevels and MonitoredQuantiles are in server/request.h.
inline constexpr int kPitBins = 10;
inline constexpr int kEceBins = 10;

struct FeedbackOptions {
  // The store's size; 0 turns feedback off (responses carry no ids).
  int64_t store_bytes = int64_t{64} << 20;
  // Predictions older than this are dropped.
  absl::Duration max_age = absl::Hours(1);
  // Observations in each version's rolling figures.
  int window = 1000;
  // Items per Feedback call.
  int max_items = 1024;
  // Pass outputs kept per regression output (a stratified summary beyond).
  int max_points = 128;
  // Adaptive conformal inference's step (gamma); 0: the calibration as is.
  double adaptive_rate = 0.0;
};

// InvalidArgument (naming the flag) unless store_bytes >= 0, max_age > 0,
// window, max_items and max_points in [1, 10^6], adaptive_rate in [0, 1).
absl::Status ValidateFeedbackOptions(const FeedbackOptions& options);

class FeedbackMonitor {
 public:
  // Registers its metric families in `registry` (which must outlive it).
  FeedbackMonitor(const FeedbackOptions& options,
                  prometheus::Registry* registry);
  ~FeedbackMonitor();

  bool enabled() const { return options_.store_bytes > 0; }
  const FeedbackOptions& options() const { return options_; }

  // The quantiles predictions of `model` made now use at the monitored
  // levels: the calibration's, or, with adaptive_rate > 0, the adapted
  // ones. Empty when the model carries no calibration or feedback is off.
  std::shared_ptr<const MonitoredQuantiles> Quantiles(const ServedModel& model);

  // Keeps what the figures need of a finished Monte-Carlo prediction
  // (`quantiles` as Quantiles gave them for it) and returns its id; "" when
  // nothing is kept (feedback off, DETERMINISTIC mode). A regression row
  // keeps at most max_points of the passes the engine returned (see
  // Prepare: the first ones; with all T returned for intervals, a
  // stratified summary); predictive draws are not passes and are not kept,
  // and an adaptive request returns passes only when asked for them. A row
  // without passes keeps its mean and std and counts towards the conformal
  // coverage and RMSE alone. Thread-safe.
  std::string Record(const ServedModel& model, const PredictPlan& plan,
                     const AdaptivePrediction& answer);

  // For a checked plan of `model`, before the engine runs it: the
  // quantiles in force (plan->monitored) and, for a fixed-T Monte-Carlo
  // regression, the engine asked to return its first max_points passes
  // (PredictOptions::keep_first_samples; the response carries passes only
  // when requested). Nothing when feedback is off.
  void Prepare(const ServedModel& model, PredictPlan* plan);

  // The Feedback call: InvalidArgument for a request without a model name
  // or with more than max_items items; otherwise OK, one result per item
  // (never failing the call for an item).
  absl::Status Submit(const mcdrop::v1::FeedbackRequest& request,
                      mcdrop::v1::FeedbackResponse* response);

  // Store occupancy (for tests and the metrics).
  int64_t stored_predictions() const;
  int64_t stored_bytes() const;

  struct Version;  // one model version's figures and adaptation state
  struct Stored;   // one kept prediction

 private:
  struct Key {
    int64_t millis = 0;  // creation time (ms since the Unix epoch)
    uint64_t nonce = 0;
    bool operator==(const Key& o) const {
      return millis == o.millis && nonce == o.nonce;
    }
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.millis, k.nonce);
    }
  };
  std::shared_ptr<Version> VersionOf(const ServedModel& model);
  void Insert(Key key, std::unique_ptr<Stored> stored);
  void EvictLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_mu_);
  mcdrop::v1::FeedbackResult Join(
      const mcdrop::v1::FeedbackRequest& request,
      const mcdrop::v1::FeedbackItem& item,
      std::vector<std::shared_ptr<Version>>* touched);
  // Items of one call by outcome, counted under `model` (or "" for a name
  // nothing was predicted from, so that hostile names add no labels).
  static constexpr int kOutcomes =
      mcdrop::v1::FeedbackResult::Outcome_ARRAYSIZE;
  void CountItems(const std::string& model,
                  const std::array<int, kOutcomes>& counts);

  const FeedbackOptions options_;
  const uint64_t nonce_key_;
  std::atomic<uint64_t> counter_{0};

  // Metric families (made once).
  prometheus::Family<prometheus::Counter>* items_ = nullptr;
  prometheus::Family<prometheus::Counter>* evictions_family_ = nullptr;
  prometheus::Counter* evicted_for_size_ = nullptr;
  prometheus::Counter* evicted_for_age_ = nullptr;
  prometheus::Gauge* store_entries_ = nullptr;
  prometheus::Gauge* store_bytes_gauge_ = nullptr;
  prometheus::Family<prometheus::Counter>* observations_ = nullptr;
  prometheus::Family<prometheus::Counter>* covered_ = nullptr;
  prometheus::Family<prometheus::Gauge>* window_ = nullptr;
  prometheus::Family<prometheus::Gauge>* coverage_ = nullptr;
  prometheus::Family<prometheus::Gauge>* pit_ = nullptr;
  prometheus::Family<prometheus::Gauge>* log_likelihood_ = nullptr;
  prometheus::Family<prometheus::Gauge>* rmse_ = nullptr;
  prometheus::Family<prometheus::Gauge>* accuracy_ = nullptr;
  prometheus::Family<prometheus::Gauge>* nll_ = nullptr;
  prometheus::Family<prometheus::Gauge>* brier_ = nullptr;
  prometheus::Family<prometheus::Gauge>* ece_ = nullptr;
  prometheus::Family<prometheus::Gauge>* set_coverage_ = nullptr;
  prometheus::Family<prometheus::Gauge>* set_size_ = nullptr;
  prometheus::Family<prometheus::Gauge>* mi_auroc_ = nullptr;
  prometheus::Family<prometheus::Gauge>* adapted_level_ = nullptr;

  absl::Mutex versions_mu_;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<Version>> versions_
      ABSL_GUARDED_BY(versions_mu_);
  absl::Mutex items_mu_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> item_counters_
      ABSL_GUARDED_BY(items_mu_);

  mutable absl::Mutex store_mu_;
  absl::flat_hash_map<Key, std::unique_ptr<Stored>> store_
      ABSL_GUARDED_BY(store_mu_);
  std::deque<Key> order_ ABSL_GUARDED_BY(store_mu_);  // oldest first
  int64_t bytes_ ABSL_GUARDED_BY(store_mu_) = 0;
  // The newest creation time of any prediction evicted: an unknown id made
  // no later than this was probably evicted (EXPIRED, not UNKNOWN_ID).
  int64_t evicted_until_millis_ ABSL_GUARDED_BY(store_mu_) = 0;
};

// "<12 hex digits of ms>-<16 hex digits>" and its row form "<id>:<row>".
std::string FormatPredictionId(int64_t millis, uint64_t nonce);

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_FEEDBACK_H_
