// Copyright 2026 The mcdrop Authors.
//
// Compiled with -ffp-contract=off (core/CMakeLists.txt): every product and
// sum below rounds on its own, as Python's floats do.

#include "core/pass_stats.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mcdrop {
namespace {

void AddInto(const std::vector<double>& from, std::vector<double>* to) {
  for (size_t i = 0; i < to->size(); ++i) (*to)[i] += from[i];
}

// Whether `left` and `right` are the two halves of one block.
bool Siblings(const PassBlock& left, const PassBlock& right) {
  return left.level == right.level && left.index % 2 == 0 &&
         right.index == left.index + 1;
}

// The values a block of `task` needs for `rows` x `outputs`, or why not.
absl::Status CheckValues(const PassBlock& b, Task task, int rows, int outputs) {
  const size_t cells = static_cast<size_t>(rows) * outputs;
  const bool regression = task == Task::kRegression;
  const bool ok = regression
                      ? b.mean.size() == cells && b.m2.size() == cells &&
                            b.sum_p.empty() && b.sum_p2.empty() &&
                            b.sum_entropy.empty()
                      : b.sum_p.size() == cells && b.sum_p2.size() == cells &&
                            b.sum_entropy.size() == static_cast<size_t>(rows) &&
                            b.mean.empty() && b.m2.empty();
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the block of level ", b.level, " and index ", b.index, " does not hold ",
      regression ? "mean and m2" : "sum_p and sum_p2", " of ", cells, " values",
      regression ? "" : absl::StrCat(" and sum_entropy of ", rows), " (", rows,
      " rows x ", outputs, " outputs) alone"));
}

// Where a part of MergeRuns lies: it begins at `begin`, and only the last
// may end inside a leaf, at the request's last pass.
absl::Status CheckPlace(const RunningStats& part, int64_t begin,
                        int64_t last_pass, bool last) {
  const int64_t end = part.first_pass + part.passes;
  if (part.first_pass != begin || part.passes > last_pass - begin) {
    return absl::InvalidArgumentError(
        absl::StrCat("it holds passes [", part.first_pass, ", ", end,
                     "); expected a run that begins at ", begin,
                     " and ends by ", last_pass));
  }
  if (!last && end % kLeafPasses != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("it ends at pass ", end, ", inside a leaf of ",
                     kLeafPasses, " passes (only the last part may)"));
  }
  if (last && end != last_pass) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the parts end at pass ", end, ", not at the request's ", last_pass));
  }
  return absl::OkStatus();
}

// Classification: a row's votes are each in [0, passes] and add up to them.
absl::Status CheckVotes(const RunningStats& run) {
  for (int r = 0; r < run.rows; ++r) {
    int64_t sum = 0;
    for (int d = 0; d < run.outputs && sum >= 0; ++d) {
      const int64_t v = run.votes[static_cast<size_t>(r) * run.outputs + d];
      // sum <= passes before the addition, so it cannot overflow.
      sum = v < 0 || v > run.passes ? -1 : sum + v;
      if (sum > run.passes) sum = -1;
    }
    if (sum != run.passes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "row ", r, "'s votes do not add up to its ", run.passes, " passes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRun(const RunningStats& run, Task task, int rows,
                      int outputs) {
  if (run.rows != rows || run.outputs != outputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("it has ", run.rows, " rows x ", run.outputs,
                     " outputs, not ", rows, " x ", outputs));
  }
  if (run.first_pass < 0 || run.passes < 1 ||
      run.passes > kMaxPasses - run.first_pass) {
    return absl::InvalidArgumentError(
        absl::StrCat("its passes [", run.first_pass, ", +", run.passes,
                     ") are not a run of at least one pass"));
  }
  const std::vector<PassBlock> expected =
      CanonicalBlocks(run.first_pass, run.passes);
  if (run.blocks.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("it has ", run.blocks.size(),
                                                   " blocks; its run has ",
                                                   expected.size()));
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const PassBlock& b = run.blocks[i];
    const PassBlock& e = expected[i];
    if (b.level != e.level || b.index != e.index || b.passes != e.passes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block ", i, " is (level ", b.level, ", index ", b.index, ", ",
          b.passes, " passes); its run's is (level ", e.level, ", index ",
          e.index, ", ", e.passes, " passes)"));
    }
    if (absl::Status s = CheckValues(b, task, rows, outputs); !s.ok()) return s;
  }
  const size_t cells = static_cast<size_t>(rows) * outputs;
  if (task == Task::kRegression) {
    if (run.votes.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError("votes belong to classification");
  }
  if (run.votes.size() != cells) {
    return absl::InvalidArgumentError(
        absl::StrCat("it has ", run.votes.size(), " votes, not ", cells));
  }
  return CheckVotes(run);
}

PassBlock Combine(const PassBlock& a, const PassBlock& b) {
  PassBlock c;
  c.level = a.level;
  c.index = a.index;
  c.passes = a.passes + b.passes;
  if (!a.mean.empty()) {
    const double na = static_cast<double>(a.passes);
    const double nb = static_cast<double>(b.passes);
    const double n = na + nb;
    const double wb = nb / n;
    const double wab = na * nb / n;
    c.mean.resize(a.mean.size());
    c.m2.resize(a.m2.size());
    for (size_t i = 0; i < a.mean.size(); ++i) {
      const double delta = b.mean[i] - a.mean[i];
      c.mean[i] = a.mean[i] + delta * wb;
      c.m2[i] = a.m2[i] + b.m2[i] + delta * delta * wab;
    }
  }
  c.sum_p = a.sum_p;
  AddInto(b.sum_p, &c.sum_p);
  c.sum_p2 = a.sum_p2;
  AddInto(b.sum_p2, &c.sum_p2);
  c.sum_entropy = a.sum_entropy;
  AddInto(b.sum_entropy, &c.sum_entropy);
  return c;
}

void PushBlock(PassBlock block, std::vector<PassBlock>* blocks) {
  blocks->push_back(std::move(block));
  while (blocks->size() >= 2 &&
         Siblings((*blocks)[blocks->size() - 2], blocks->back())) {
    PassBlock right = std::move(blocks->back());
    blocks->pop_back();
    PassBlock& left = blocks->back();
    PassBlock parent = Combine(left, right);
    parent.level = left.level + 1;
    parent.index = left.index / 2;
    left = std::move(parent);
  }
}

PassBlock Total(const std::vector<PassBlock>& blocks) {
  PassBlock acc = blocks.back();
  for (size_t i = blocks.size() - 1; i-- > 0;) acc = Combine(blocks[i], acc);
  return acc;
}

std::vector<PassBlock> CanonicalBlocks(int64_t first, int64_t passes) {
  std::vector<PassBlock> out;
  if (passes <= 0) return out;
  const int64_t L = kLeafPasses, end = first + passes;
  const int64_t closed_end = end % L == 0 ? end : end / L * L;
  // Closed leaves [l0, l1), the first possibly begun after its start: the
  // maximal aligned blocks, left to right.
  for (int64_t l = first / L; l < closed_end / L;) {
    int level = 0;
    while (level < 62 && l % (int64_t{2} << level) == 0 &&
           l + (int64_t{2} << level) <= closed_end / L) {
      ++level;
    }
    PassBlock b;
    b.level = level;
    b.index = l >> level;
    b.passes = std::min((l + (int64_t{1} << level)) * L, closed_end) -
               std::max(l * L, first);
    out.push_back(std::move(b));
    l += int64_t{1} << level;
  }
  if (end % L != 0) {  // the leaf still filling
    PassBlock b;
    b.index = end / L;
    b.passes = end - std::max(end / L * L, first);
    out.push_back(std::move(b));
  }
  return out;
}

RunningStats SelectRows(const RunningStats& stats,
                        const std::vector<int>& rows) {
  const int D = stats.outputs;
  auto cells = [&](const std::vector<double>& from, int per_row) {
    std::vector<double> to;
    if (from.empty()) return to;
    to.reserve(rows.size() * per_row);
    for (int r : rows) {
      auto first = from.begin() + static_cast<size_t>(r) * per_row;
      to.insert(to.end(), first, first + per_row);
    }
    return to;
  };
  RunningStats out;
  out.first_pass = stats.first_pass;
  out.passes = stats.passes;
  out.rows = static_cast<int>(rows.size());
  out.outputs = D;
  for (const PassBlock& b : stats.blocks) {
    PassBlock s;
    s.level = b.level;
    s.index = b.index;
    s.passes = b.passes;
    s.mean = cells(b.mean, D);
    s.m2 = cells(b.m2, D);
    s.sum_p = cells(b.sum_p, D);
    s.sum_p2 = cells(b.sum_p2, D);
    s.sum_entropy = cells(b.sum_entropy, 1);
    out.blocks.push_back(std::move(s));
  }
  if (!stats.votes.empty()) {
    for (int r : rows) {
      auto first = stats.votes.begin() + static_cast<size_t>(r) * D;
      out.votes.insert(out.votes.end(), first, first + D);
    }
  }
  return out;
}

absl::StatusOr<RunningStats> MergeRuns(const std::vector<RunningStats>& parts,
                                       Task task, int64_t last_pass) {
  if (parts.empty()) return absl::InvalidArgumentError("no parts to merge");
  RunningStats out;
  out.rows = parts[0].rows;
  out.outputs = parts[0].outputs;
  if (out.rows < 1 || out.outputs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("part 0 has ", out.rows, " rows x ", out.outputs,
                     " outputs; at least 1 x 1 is needed"));
  }
  // Every part checked before anything is sized by what they say.
  for (size_t k = 0, begin = 0; k < parts.size(); ++k) {
    const RunningStats& part = parts[k];
    absl::Status s = CheckRun(part, task, out.rows, out.outputs);
    if (s.ok()) {
      s = CheckPlace(part, static_cast<int64_t>(begin), last_pass,
                     k + 1 == parts.size());
    }
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("part ", k, ": ", s.message()));
    }
    begin += static_cast<size_t>(part.passes);
  }
  if (task == Task::kClassification) {
    out.votes.assign(static_cast<size_t>(out.rows) * out.outputs, 0);
  }
  for (const RunningStats& part : parts) {
    for (const PassBlock& b : part.blocks) PushBlock(b, &out.blocks);
    for (size_t i = 0; i < part.votes.size(); ++i)
      out.votes[i] += part.votes[i];
    out.passes += part.passes;
  }
  return out;
}

PassFigures Figures(const RunningStats& stats, Task task, double noise) {
  const PassBlock all = Total(stats.blocks);
  const int B = stats.rows, D = stats.outputs;
  const size_t cells = static_cast<size_t>(B) * D;
  const double T = static_cast<double>(all.passes);
  PassFigures f;
  f.passes = all.passes;
  f.mean.resize(cells);
  f.model_variance.resize(cells);
  if (task == Task::kClassification) {
    f.predicted_class.resize(B);
    f.entropy.resize(B);
    f.mutual_information.resize(B);
    f.expected_entropy.resize(B);
    f.variation_ratio.resize(B);
    f.votes.assign(stats.votes.begin(), stats.votes.end());
    for (int r = 0; r < B; ++r) {
      double h = 0.0;
      int best = 0;
      int64_t modal = 0;
      for (int d = 0; d < D; ++d) {
        const size_t i = static_cast<size_t>(r) * D + d;
        const double p = all.sum_p[i] / T;
        f.mean[i] = p;
        // Probabilities are at most 1, so the cancellation costs at most
        // ~1e-16 absolute; a rounding residue below 0 is clamped.
        f.model_variance[i] = std::max(0.0, all.sum_p2[i] / T - p * p);
        if (p > 0.0) h -= p * std::log(p);
        if (p > f.mean[static_cast<size_t>(r) * D + best]) best = d;
        modal = std::max(modal, stats.votes[i]);
      }
      f.predicted_class[r] = best;
      f.entropy[r] = h;
      // MI >= 0 mathematically (Jensen); clamp the rounding residue.
      f.expected_entropy[r] = all.sum_entropy[r] / T;
      f.mutual_information[r] = std::max(0.0, h - f.expected_entropy[r]);
      f.variation_ratio[r] = 1.0 - static_cast<double>(modal) / T;
    }
  } else {
    f.variance.resize(cells);
    for (size_t i = 0; i < cells; ++i) {
      f.mean[i] = all.mean[i];
      f.model_variance[i] = all.m2[i] / T;
      f.variance[i] = f.model_variance[i] + noise;
    }
  }
  f.standard_error.assign(cells, 0.0);
  if (all.passes >= 2) {
    for (size_t i = 0; i < cells; ++i) {
      f.standard_error[i] = std::sqrt(f.model_variance[i] / (T - 1.0));
    }
  }
  return f;
}

}  // namespace mcdrop
