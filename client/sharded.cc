// Copyright 2026 The mcdrop Authors.

#include "client/sharded.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/validation.h"
#include "core/pass_stats.h"

namespace mcdrop {
namespace {

bool Retryable(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

uint64_t FreshSeed() {
  std::random_device rd;
  uint64_t s = 0;
  while (s == 0) s = (uint64_t{rd()} << 32) ^ rd();
  return s;
}

std::vector<double> Doubles(const google::protobuf::RepeatedField<double>& f) {
  return std::vector<double>(f.begin(), f.end());
}

// A range's statistics as the engine holds them (checked by MergeRuns).
// `samples` is the request's T; the range must lie within it.
absl::StatusOr<RunningStats> FromProto(const v1::PassStatistics& p,
                                       int64_t samples) {
  if (p.leaf_passes() != kLeafPasses) {
    return absl::InvalidArgumentError(
        absl::StrCat("its leaves are of ", p.leaf_passes(),
                     " passes; this client merges leaves of ", kLeafPasses));
  }
  if (!(0 <= p.begin() && p.begin() < p.end() && p.end() <= samples)) {
    return absl::InvalidArgumentError(
        absl::StrCat("it holds passes [", p.begin(), ", ", p.end(),
                     "), not a range of the request's ", samples));
  }
  RunningStats s;
  s.first_pass = p.begin();
  s.passes = p.end() - p.begin();
  s.rows = p.rows();
  s.outputs = p.outputs();
  s.votes.assign(p.votes().begin(), p.votes().end());
  for (const v1::PassBlock& b : p.blocks()) {
    PassBlock block;
    block.level = b.level();
    block.index = b.index();
    block.passes = b.passes();
    block.mean = Doubles(b.mean());
    block.m2 = Doubles(b.m2());
    block.sum_p = Doubles(b.sum_p());
    block.sum_p2 = Doubles(b.sum_p2());
    block.sum_entropy = Doubles(b.sum_entropy());
    s.blocks.push_back(std::move(block));
  }
  return s;
}

// The rows of the merged answer, as the server fills them (server/request.cc,
// FillPredictResponse).
void FillRows(const PassFigures& f, const RunningStats& s, Task task,
              v1::PredictResponse* out) {
  const int D = s.outputs;
  for (int r = 0; r < s.rows; ++r) {
    v1::RowPrediction* row = out->add_rows();
    row->set_samples(static_cast<int32_t>(f.passes));
    const size_t at = static_cast<size_t>(r) * D;
    if (task == Task::kRegression) {
      for (int d = 0; d < D; ++d) {
        v1::OutputPrediction* o = row->add_outputs();
        o->set_mean(f.mean[at + d]);
        o->set_variance(f.variance[at + d]);
        o->set_std(std::sqrt(f.variance[at + d]));
        o->set_model_variance(f.model_variance[at + d]);
        o->set_standard_error(f.standard_error[at + d]);
      }
      continue;
    }
    v1::ClassPrediction* c = row->mutable_classification();
    for (int d = 0; d < D; ++d) c->add_probabilities(f.mean[at + d]);
    c->set_predicted_class(f.predicted_class[r]);
    c->set_entropy(f.entropy[r]);
    c->set_mutual_information(f.mutual_information[r]);
    c->set_variation_ratio(f.variation_ratio[r]);
    for (int d = 0; d < D; ++d)
      c->add_standard_errors(f.standard_error[at + d]);
  }
}

absl::Status CheckShardable(const v1::PredictRequest& r) {
  if (r.mode() != v1::MONTE_CARLO || r.samples() < 1) {
    return absl::InvalidArgumentError(
        "a request spread over servers is MONTE_CARLO with samples > 0");
  }
  if (r.has_target() || r.interval_levels_size() > 0 ||
      r.set_levels_size() > 0) {
    return absl::InvalidArgumentError(
        "a request spread over servers has no target, interval_levels or "
        "set_levels: they need every pass in one place");
  }
  if (r.has_sample_range()) {
    return absl::InvalidArgumentError(
        "the request already names a sample_range; the client makes them");
  }
  return absl::OkStatus();
}

// The ranges' ends: options.ends, checked, or SplitPasses.
absl::StatusOr<std::vector<int64_t>> RangeEnds(int64_t T,
                                               const ShardOptions& options,
                                               int replicas) {
  if (options.ends.empty()) {
    int64_t n = options.ranges;
    if (n <= 0) {
      const int64_t most = std::max<int64_t>(1, options.max_range_passes);
      n = std::max<int64_t>(replicas, (T + most - 1) / most);
    }
    return SplitPasses(T, static_cast<int>(std::min<int64_t>(n, 1 << 20)));
  }
  int64_t previous = 0;
  for (size_t i = 0; i < options.ends.size(); ++i) {
    const int64_t e = options.ends[i];
    const bool last = i + 1 == options.ends.size();
    if (e <= previous || (last ? e != T : e % kLeafPasses != 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("range end ", e, " (number ", i,
                       "): ends must ascend, be multiples of ", kLeafPasses,
                       ", and the last must be T = ", T));
    }
    previous = e;
  }
  return options.ends;
}

absl::Status FirstError(
    const std::vector<absl::StatusOr<v1::PredictResponse>>& answers) {
  for (const auto& a : answers) {
    if (!a.ok()) return a.status();
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<int64_t> SplitPasses(int64_t samples, int ranges) {
  const int64_t leaves = (samples + kLeafPasses - 1) / kLeafPasses;
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(ranges, leaves));
  std::vector<int64_t> ends;
  for (int64_t i = 1; i <= n; ++i) {
    ends.push_back(std::min(samples, leaves * i / n * kLeafPasses));
  }
  return ends;
}

absl::StatusOr<v1::PredictResponse> MergeRanges(
    const v1::PredictRequest& request,
    const std::vector<v1::PredictResponse>& ranges) {
  if (ranges.empty()) return absl::InvalidArgumentError("no ranges to merge");
  const v1::PredictResponse& first = ranges[0];
  const Task task = first.task() == v1::CLASSIFICATION ? Task::kClassification
                                                       : Task::kRegression;
  std::vector<RunningStats> parts;
  double queue = 0, compute = 0;
  v1::PredictResponse out;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const v1::PredictResponse& r = ranges[i];
    const v1::PassStatistics& p = r.pass_statistics();
    auto bad = [&](absl::string_view why) {
      return absl::InternalError(absl::StrCat("range ", i, " [", p.begin(),
                                              ", ", p.end(), "): ", why));
    };
    if (!r.has_pass_statistics()) {
      return bad(
          "the answer carries no pass statistics (a server that does not "
          "know sample ranges?)");
    }
    if (r.model() != first.model() || r.version() != first.version() ||
        r.task() != first.task() || r.seed() != first.seed() ||
        p.noise_variance() != first.pass_statistics().noise_variance()) {
      return bad(absl::StrCat("answered by ", r.model(), " version ",
                              r.version(), " (seed ", r.seed(),
                              "); range 0 by ", first.model(), " version ",
                              first.version(), " (seed ", first.seed(), ")"));
    }
    auto part = FromProto(p, request.samples());
    if (!part.ok()) return bad(part.status().message());
    parts.push_back(*std::move(part));
    queue = std::max(queue, r.queue_seconds());
    compute += r.compute_seconds();
    out.mutable_sample_values()->Add(r.sample_values().begin(),
                                     r.sample_values().end());
  }
  auto merged = MergeRuns(parts, task, request.samples());
  if (!merged.ok()) {
    return absl::InternalError(
        absl::StrCat("the ranges do not merge: ", merged.status().message()));
  }
  const PassFigures f =
      Figures(*merged, task, first.pass_statistics().noise_variance());
  out.set_model(first.model());
  out.set_version(first.version());
  out.set_task(first.task());
  out.set_samples(request.samples());
  out.set_seed(first.seed());
  out.set_queue_seconds(queue);
  out.set_compute_seconds(compute);
  out.set_final(true);
  out.set_row_passes(static_cast<int64_t>(merged->rows) * request.samples());
  FillRows(f, *merged, task, &out);
  if (request.return_samples()) {
    out.add_sample_shape(request.samples());
    out.add_sample_shape(merged->rows);
    out.add_sample_shape(merged->outputs);
  } else {
    out.clear_sample_values();
  }
  v1::PredictRequest whole = request;
  whole.clear_sample_range();
  if (absl::Status s = ValidatePredictResponse(out, ExpectationOf(whole));
      !s.ok()) {
    return s;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ShardedClient>> ShardedClient::Connect(
    const std::vector<std::string>& targets, const ClientOptions& options) {
  if (targets.empty()) {
    return absl::InvalidArgumentError("give at least one replica");
  }
  std::vector<std::unique_ptr<Client>> replicas;
  for (const std::string& t : targets) {
    ClientOptions o = options;
    o.target = t;
    auto c = Client::Connect(o);
    if (!c.ok()) return c.status();
    replicas.push_back(*std::move(c));
  }
  return std::make_unique<ShardedClient>(std::move(replicas));
}

ShardedClient::ShardedClient(std::vector<std::unique_ptr<Client>> replicas)
    : replicas_(std::move(replicas)) {}

absl::StatusOr<v1::PredictResponse> ShardedClient::RunRange(
    const v1::PredictRequest& request, int64_t begin, int64_t end, int first,
    int max_attempts, RangeReport* report) const {
  v1::PredictRequest range = request;
  range.mutable_sample_range()->set_begin(begin);
  range.mutable_sample_range()->set_end(end);
  report->begin = begin;
  report->end = end;
  const auto start = std::chrono::steady_clock::now();
  absl::Status last;
  for (int a = 0; a < std::max(1, max_attempts); ++a) {
    const int replica = (first + a) % replicas();
    const Client& client = *replicas_[replica];
    grpc::ClientContext ctx;
    client.PrepareContext(&ctx, client.options().timeout);
    v1::PredictResponse response;
    ++report->attempts;
    last = FromGrpcStatus(client.stub().Predict(&ctx, range, &response));
    if (last.ok()) {
      report->replica = replica;
      report->seconds = std::chrono::duration<double>(
                            std::chrono::steady_clock::now() - start)
                            .count();
      return response;
    }
    absl::StrAppend(&report->errors, report->errors.empty() ? "" : "; ",
                    "replica ", replica, ": ", last.ToString());
    if (!Retryable(last.code())) break;
  }
  return absl::Status(
      last.code(),
      absl::StrCat("passes [", begin, ", ", end, "): ", report->attempts,
                   " call(s) failed: ", report->errors));
}

void ShardedClient::RunRanges(
    const v1::PredictRequest& request, const std::vector<int64_t>& ends,
    const std::vector<size_t>& which, const std::function<int(size_t)>& first,
    const ShardOptions& options,
    std::vector<absl::StatusOr<v1::PredictResponse>>* answers,
    std::vector<RangeReport>* reports) const {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k; (k = next.fetch_add(1)) < which.size();) {
      const size_t i = which[k];
      const int64_t begin = i == 0 ? 0 : ends[i - 1];
      (*answers)[i] = RunRange(request, begin, ends[i], first(i),
                               options.max_attempts, &(*reports)[i]);
    }
  };
  const size_t workers = std::min<size_t>(
      which.size(), static_cast<size_t>(std::max(1, options.max_concurrent)));
  std::vector<std::thread> threads;
  for (size_t w = 1; w < workers; ++w) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
}

absl::Status ShardedClient::RerunOtherVersions(
    v1::PredictRequest* request, const std::vector<int64_t>& ends,
    const ShardOptions& options,
    std::vector<absl::StatusOr<v1::PredictResponse>>* answers,
    std::vector<RangeReport>* reports) const {
  const v1::PredictResponse& first = *(*answers)[0];
  std::vector<size_t> again;
  for (size_t i = 1; i < answers->size(); ++i) {
    if ((*answers)[i]->model() != first.model() ||
        (*answers)[i]->version() != first.version()) {
      again.push_back(i);
    }
  }
  if (again.empty()) return absl::OkStatus();
  request->set_model(first.model());
  request->set_version(first.version());
  // From the replica that answered range 0, which has that version.
  const int holder = (*reports)[0].replica;
  RunRanges(
      *request, ends, again, [holder](size_t) { return holder; }, options,
      answers, reports);
  return FirstError(*answers);
}

absl::StatusOr<v1::PredictResponse> ShardedClient::Predict(
    const v1::PredictRequest& request, const ShardOptions& options,
    std::vector<RangeReport>* report) const {
  if (absl::Status s = CheckShardable(request); !s.ok()) return s;
  auto ends = RangeEnds(request.samples(), options, replicas());
  if (!ends.ok()) return ends.status();
  v1::PredictRequest req = request;
  if (req.seed() == 0) req.set_seed(FreshSeed());
  const size_t n = ends->size();
  std::vector<absl::StatusOr<v1::PredictResponse>> answers(n);
  std::vector<RangeReport> reports(n);
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  RunRanges(
      req, *ends, all,
      [this](size_t i) { return static_cast<int>(i % replicas()); }, options,
      &answers, &reports);
  absl::Status status = FirstError(answers);
  if (status.ok()) {
    status = RerunOtherVersions(&req, *ends, options, &answers, &reports);
  }
  if (report != nullptr) *report = reports;
  if (!status.ok()) return status;
  std::vector<v1::PredictResponse> ranges;
  for (auto& a : answers) ranges.push_back(*std::move(a));
  return MergeRanges(req, ranges);
}

}  // namespace mcdrop
