// Copyright 2026 The mcdrop Authors.
//
// One request's Monte-Carlo passes spread over several servers (docs/api.md,
// "One request over many servers"). The masks of pass t of row b depend on
// (seed, b, t, layer, unit) alone, so the passes [0, T) can be cut into
// ranges computed anywhere; each server returns its range's statistics
// (PredictRequest.sample_range, PredictResponse.pass_statistics) and the
// client merges them (core/pass_stats.h) into the answer one server running
// all T passes gives: the same bits, for the same seed.
//
//   auto fleet = mcdrop::ShardedClient::Connect(
//       {"10.0.0.1:50051", "10.0.0.2:50051"}, {});
//   req.set_samples(1000000);
//   req.set_seed(7);
//   auto resp = (*fleet)->Predict(req);  // a PredictResponse, as Predict's

#ifndef MCDROP_CLIENT_SHARDED_H_
#define MCDROP_CLIENT_SHARDED_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "mcdrop/v1/inference.pb.h"

namespace mcdrop {

struct ShardOptions {
  // How many ranges T is cut into (equal, at multiples of the leaf of 256
  // passes); 0: one per replica, or more when T / replicas would exceed
  // max_range_passes.
  int ranges = 0;
  // The most passes a range may have: the servers' --max_samples (default
  // 100,000), which each range must respect.
  int64_t max_range_passes = 100000;
  // Calls in flight at once, at most (ranges beyond wait for a free one).
  int max_concurrent = 64;
  // Instead: the ranges' ends, ascending, each a multiple of 256 but the
  // last, which is T ({768, 2000} for T = 2000: [0, 768) and [768, 2000)).
  std::vector<int64_t> ends;
  // Calls per range: a range whose call fails for a reason another replica
  // may not have (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
  // CANCELLED, UNKNOWN, INTERNAL) goes to the next replica, up to this many
  // calls in all. Other errors (a bad request) end the prediction at once.
  int max_attempts = 3;
};

// What happened to each range.
struct RangeReport {
  int64_t begin = 0, end = 0;
  int replica = -1;  // the replica that answered (index into the targets)
  int attempts = 0;  // calls made
  double seconds = 0;
  std::string errors;  // the failed calls' errors, "; "-separated
};

// The cut points 0 < e_1 < ... < e_n = T of `ranges` ranges of T passes, as
// equal as multiples of 256 allow (fewer ranges when T has fewer leaves).
std::vector<int64_t> SplitPasses(int64_t samples, int ranges);

// Merges the answers to the ranges of `request` (in range order) into the
// answer to the whole request: InvalidArgument or Internal, saying which
// range and what, if they are not the ranges' statistics of one model
// version, rows and outputs that together cover [0, samples). The response
// is checked as Client::Predict checks one server's.
absl::StatusOr<v1::PredictResponse> MergeRanges(
    const v1::PredictRequest& request,
    const std::vector<v1::PredictResponse>& ranges);

// Thread-safe.
class ShardedClient {
 public:
  // One channel per target (each a replica's address; ClientOptions as for
  // Client, its `target` ignored).
  static absl::StatusOr<std::unique_ptr<ShardedClient>> Connect(
      const std::vector<std::string>& targets, const ClientOptions& options);
  explicit ShardedClient(std::vector<std::unique_ptr<Client>> replicas);

  // The answer to `request` (MONTE_CARLO, samples > 0; no target, interval
  // or set levels; seed 0 draws one here, so that every range shares it),
  // its ranges computed at once on the replicas (up to max_concurrent calls
  // at a time), range i first on replica i mod N. Ranges answered by another
  // model version than the first range's are asked again, pinned to that
  // version. `report`, if given, receives one entry per range.
  absl::StatusOr<v1::PredictResponse> Predict(
      const v1::PredictRequest& request, const ShardOptions& options = {},
      std::vector<RangeReport>* report = nullptr) const;

  int replicas() const { return static_cast<int>(replicas_.size()); }

 private:
  // Runs ranges `which` (indices into `ends`) at once, range i from replica
  // first(i) on, into answers[i] and reports[i].
  void RunRanges(const v1::PredictRequest& request,
                 const std::vector<int64_t>& ends,
                 const std::vector<size_t>& which,
                 const std::function<int(size_t)>& first,
                 const ShardOptions& options,
                 std::vector<absl::StatusOr<v1::PredictResponse>>* answers,
                 std::vector<RangeReport>* reports) const;
  // Where ranges were answered by another model or version than range 0,
  // pins `request` to range 0's and asks those ranges again.
  absl::Status RerunOtherVersions(
      v1::PredictRequest* request, const std::vector<int64_t>& ends,
      const ShardOptions& options,
      std::vector<absl::StatusOr<v1::PredictResponse>>* answers,
      std::vector<RangeReport>* reports) const;
  // Range [begin, end) of `request`, from replica `first` on.
  absl::StatusOr<v1::PredictResponse> RunRange(
      const v1::PredictRequest& request, int64_t begin, int64_t end, int first,
      int max_attempts, RangeReport* report) const;

  std::vector<std::unique_ptr<Client>> replicas_;
};

}  // namespace mcdrop

#endif  // MCDROP_CLIENT_SHARDED_H_
