// Copyright 2026 The mcdrop Authors.
//
// The running statistics of a request's Monte-Carlo passes, reduced in an
// order fixed by the passes' indices alone, so that the passes of one request
// may be split at multiples of kLeafPasses -- into rounds on one server, or
// into ranges on many (docs/api.md, "One request over many servers") -- and
// merged to the same bits as one server computing all of them.
//
// The order. Passes 0 .. T-1 fall into leaves of kLeafPasses: leaf k holds
// passes [k L, (k + 1) L). Within a leaf the passes are folded in pass order:
// Welford's update of the mean and the sum of squared deviations
// (regression), plain sums of the probabilities, their squares and the
// per-pass entropies (classification). Leaves are then combined up a binary
// tree: the block of level j and index i covers leaves [i 2^j, (i + 1) 2^j),
// and its statistics are Combine(its left half, its right half); a block
// whose right half holds no pass is its left half. The whole request's
// statistics are those of the smallest block covering every pass.
//
// Any run of passes [a, b) with a a multiple of L is held as its maximal
// blocks, left to right: the canonical decomposition of the run, at most
// 2 log2(T / L) + 2 blocks, whose last may be a leaf still filling, kept
// apart (CanonicalBlocks). Runs that meet end to end merge by pushing the
// right one's blocks after the left one's (PushBlock: a leaf still filling
// may then be combined with its left sibling, which changes no bit of the
// total, as the right-to-left fold nests the same way).
//
// Combine (Chan, Golub and LeVeque's pairwise update for regression, sums for
// classification) and the figures (Figures) are compiled without fused
// multiply-adds, so that a client that merges ranges in another language
// (client/python/mcdrop/sharded.py) reproduces the bits with plain IEEE
// double arithmetic (and the same libm log for the entropy: the same bits
// where the client's log is glibc's, as the server's is).

#ifndef MCDROP_CORE_PASS_STATS_H_
#define MCDROP_CORE_PASS_STATS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model.h"

namespace mcdrop {

// L: the passes of one leaf. Rounds and ranges split at multiples of it.
inline constexpr int64_t kLeafPasses = 256;
// Pass indices are below this (the engine's are 32-bit).
inline constexpr int64_t kMaxPasses = int64_t{1} << 32;

// The statistics of one block of passes (or of a leaf still filling), for
// every row and output of a request.
struct PassBlock {
  int level = 0;      // covers leaves [index << level, (index + 1) << level)
  int64_t index = 0;  //   (less where the run starts or ends inside them)
  int64_t passes = 0;
  // Regression [B x D]: Welford's mean and sum of squared deviations.
  std::vector<double> mean, m2;
  // Classification: sums of the probabilities and of their squares [B x D],
  // and of the per-pass entropies [B].
  std::vector<double> sum_p, sum_p2, sum_entropy;
};

// The statistics of a run of passes [first_pass, first_pass + passes) of the
// same rows: what a later request continues (PredictOptions::resume), and
// what one range of a request spread over servers returns.
struct RunningStats {
  int64_t first_pass = 0;
  int64_t passes = 0;
  int rows = 0, outputs = 0;
  // Left to right; the last may be a leaf still filling (it ends before a
  // multiple of kLeafPasses).
  std::vector<PassBlock> blocks;
  // Classification [B x D]: the passes whose most probable class was d.
  std::vector<int64_t> votes;
};

// The statistics of `left` and `right` together (right's passes follow
// left's). Both have the same fields and sizes.
PassBlock Combine(const PassBlock& left, const PassBlock& right);

// Appends `block`, whose passes follow those of blocks->back(), and combines
// the last two blocks while they are the two halves of one block.
void PushBlock(PassBlock block, std::vector<PassBlock>* blocks);

// The statistics of every pass of `blocks` (non-empty): the right-to-left
// fold, which is the tree's root when the run starts at pass 0.
PassBlock Total(const std::vector<PassBlock>& blocks);

// The blocks (level, index, passes; values empty) of the canonical
// decomposition of passes [first, first + passes).
std::vector<PassBlock> CanonicalBlocks(int64_t first, int64_t passes);

// The rows `rows` of `stats`, in that order; each in [0, stats.rows).
RunningStats SelectRows(const RunningStats& stats,
                        const std::vector<int>& rows);

// OK if `run` is well formed for `rows` x `outputs` of `task`: at least one
// pass, its blocks its run's canonical decomposition with the values
// (PassBlock) of those sizes, and for classification votes that add up to
// the passes row by row; else InvalidArgument saying what is wrong.
absl::Status CheckRun(const RunningStats& run, Task task, int rows,
                      int outputs);

// Merges the statistics of runs of the same rows that together are passes
// [0, last_pass) of one request, in order: InvalidArgument, saying which part
// and why, unless each part is well formed (CheckRun, with the first part's
// rows and outputs), begins where the one before ends, and ends at a
// multiple of kLeafPasses (the last: at last_pass).
absl::StatusOr<RunningStats> MergeRuns(const std::vector<RunningStats>& parts,
                                       Task task, int64_t last_pass);

// The figures of every pass of `stats` (non-empty; MC mode), as the engine
// reports them (engine.h, Prediction): regression mean, variance (plus
// `noise`, 1/tau or 0) and model variance [B x D]; classification mean
// probabilities, their spread, predicted class, entropy, mutual information,
// expected entropy, variation ratio and votes. `standard_error` [B x D]: the
// Monte-Carlo standard error of each mean, sqrt(model variance / (T - 1))
// (0 for one pass).
struct PassFigures {
  int64_t passes = 0;
  std::vector<double> mean, variance, model_variance, standard_error;
  std::vector<int> predicted_class;
  std::vector<double> entropy, mutual_information, expected_entropy,
      variation_ratio;
  std::vector<int> votes;
};
PassFigures Figures(const RunningStats& stats, Task task, double noise);

}  // namespace mcdrop

#endif  // MCDROP_CORE_PASS_STATS_H_
