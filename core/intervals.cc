// Copyright 2026 The mcdrop Authors.

#include "core/intervals.h"

#include <algorithm>
#include <cmath>

namespace mcdrop {
namespace {

double EmpiricalQuantile(const std::vector<double>& sorted, double q) {
  const double pos = q * (sorted.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= sorted.size()) return sorted.back();
  const double frac = pos - i;
  return sorted[i] + frac * (sorted[i + 1] - sorted[i]);
}

double MixtureDensity(const std::vector<double>& ys, double s, double z) {
  double sum = 0.0;
  for (double y : ys) {
    const double u = (z - y) / s;
    sum += std::exp(-0.5 * u * u);
  }
  return sum / (ys.size() * s * std::sqrt(2 * M_PI));
}

double MixtureQuantile(const std::vector<double>& ys, double s, double q) {
  // The q-quantile lies within the samples' range widened by 10 s (the
  // normal tail beyond 10 s is below 1e-23).
  double lo = ys.front() - 10 * s, hi = ys.back() + 10 * s;
  double z = EmpiricalQuantile(ys, q);
  const double tol = 1e-10 * std::max(1.0, std::abs(z)) + 1e-12 * s;
  for (int iter = 0; iter < 200 && hi - lo > tol; ++iter) {
    const double f = MixtureCdf(ys, s, z) - q;
    if (f == 0) return z;
    if (f < 0) {
      lo = z;
    } else {
      hi = z;
    }
    const double d = MixtureDensity(ys, s, z);
    double next = d > 0 ? z - f / d : 0.5 * (lo + hi);
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (std::abs(next - z) < tol) return next;
    z = next;
  }
  return z;
}

}  // namespace

double MixtureCdf(const std::vector<double>& ys, double s, double z) {
  double sum = 0.0;
  for (double y : ys) sum += 0.5 * std::erfc(-(z - y) / (s * M_SQRT2));
  return sum / ys.size();
}

IntervalBounds PredictiveInterval(const float* samples, int64_t stride, int T,
                                  double noise_variance, double level,
                                  std::vector<double>* scratch) {
  std::vector<double>& ys = *scratch;
  ys.resize(T);
  for (int t = 0; t < T; ++t) ys[t] = samples[t * stride];
  std::sort(ys.begin(), ys.end());
  const double a = (1.0 - level) / 2, b = (1.0 + level) / 2;
  if (noise_variance <= 0)
    return {EmpiricalQuantile(ys, a), EmpiricalQuantile(ys, b)};
  const double s = std::sqrt(noise_variance);
  return {MixtureQuantile(ys, s, a), MixtureQuantile(ys, s, b)};
}

}  // namespace mcdrop
