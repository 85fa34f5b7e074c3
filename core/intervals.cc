// Copyright 2026 The mcdrop Authors.

#include "core/intervals.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mcdrop {
namespace {

constexpr double kClustersPerSigma = 32;  // h = s / 32
constexpr double kWindowSigmas = 9;       // Phi(-9) ~ 1.1e-19
constexpr double kInvSqrt2Pi = 0.398942280401432677939946059934;

double EmpiricalQuantile(const std::vector<float>& sorted, double q) {
  const double pos = q * (sorted.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= sorted.size()) return sorted.back();
  const double frac = pos - i;
  return sorted[i] + frac * (static_cast<double>(sorted[i + 1]) - sorted[i]);
}

// Groups sorted samples into clusters whose members lie within h of the
// cluster's first member, each kept as (count, mean, central moments 2-4),
// and the number of samples before each cluster.
// Moments are kept in units of s (sum of (d/s)^k), so that no power of s
// under- or overflows whatever tau is.
void BuildClusters(const std::vector<float>& ys, double s_noise, double h,
                   IntervalScratch* s) {
  s->count.clear();
  s->centre.clear();
  s->m2.clear();
  s->m3.clear();
  s->m4.clear();
  s->below.clear();
  double before = 0;
  for (size_t i = 0; i < ys.size();) {
    size_t j = i + 1;
    const double start = ys[i];
    while (j < ys.size() && ys[j] - start <= h) ++j;
    double sum = 0;
    for (size_t k = i; k < j; ++k) sum += ys[k];
    const double n = static_cast<double>(j - i);
    const double c = sum / n;
    double m2 = 0, m3 = 0, m4 = 0;
    for (size_t k = i; k < j; ++k) {
      const double d = (ys[k] - c) / s_noise, d2 = d * d;
      m2 += d2;
      m3 += d2 * d;
      m4 += d2 * d2;
    }
    s->count.push_back(n);
    s->centre.push_back(c);
    s->m2.push_back(m2);
    s->m3.push_back(m3);
    s->m4.push_back(m4);
    s->below.push_back(before);
    before += n;
    i = j;
  }
}

struct CdfAndDensity {
  double cdf = 0;      // times T
  double density = 0;  // times T * s
};

// The mixture CDF at z and its density, from the clusters: each member's
// Phi((z - y) / s) is expanded around its cluster's mean to fourth order.
CdfAndDensity ClusterCdf(const IntervalScratch& c, double s, double window,
                         double z) {
  const std::vector<double>& x = c.centre;
  const size_t first =
      std::lower_bound(x.begin(), x.end(), z - window) - x.begin();
  const size_t last =
      std::upper_bound(x.begin(), x.end(), z + window) - x.begin();
  CdfAndDensity out;
  out.cdf = first < x.size() ? c.below[first] : c.below.back() + c.count.back();
  for (size_t k = first; k < last; ++k) {
    const double u = (z - x[k]) / s, u2 = u * u;
    const double phi = kInvSqrt2Pi * std::exp(-0.5 * u2);
    const double Phi = 0.5 * std::erfc(-u * M_SQRT1_2);
    const double a2 = c.m2[k] / 2, a3 = c.m3[k] / 6, a4 = c.m4[k] / 24;
    // Derivatives of Phi: Phi'' = -u phi, Phi''' = (u^2 - 1) phi,
    // Phi'''' = (3u - u^3) phi, Phi^(5) = (u^4 - 6u^2 + 3) phi.
    const double d2 = -u * phi, d3 = (u2 - 1) * phi, d4 = (3 - u2) * u * phi,
                 d5 = (u2 * u2 - 6 * u2 + 3) * phi;
    out.cdf += c.count[k] * Phi + a2 * d2 - a3 * d3 + a4 * d4;
    out.density += c.count[k] * phi + a2 * d3 - a3 * d4 + a4 * d5;
  }
  return out;
}

// The q-quantile of the mixture: Newton steps on the cluster CDF, kept
// inside a bracket that bisection shrinks when a step leaves it.
double MixtureQuantile(const IntervalScratch& c, double lo, double hi, double s,
                       double q, double start) {
  const double total = c.below.back() + c.count.back();
  const double window = kWindowSigmas * s + s / kClustersPerSigma;
  const double target = q * total;
  double z = std::clamp(start, lo, hi);
  for (int iter = 0; iter < 100; ++iter) {
    const CdfAndDensity f = ClusterCdf(c, s, window, z);
    const double err = f.cdf - target;
    if (std::abs(err) <= 1e-13 * total) return z;
    if (err < 0) {
      lo = z;
    } else {
      hi = z;
    }
    double next = f.density > 0 ? z - err * s / f.density : 0.5 * (lo + hi);
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (std::abs(next - z) <= 1e-12 * (std::abs(z) + s)) return next;
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

void PredictiveIntervals(const float* samples, int64_t stride, int T,
                         double noise_variance, absl::Span<const double> levels,
                         IntervalBounds* out, IntervalScratch* scratch) {
  std::vector<float>& ys = scratch->sorted;
  ys.resize(T);
  bool finite = true;
  for (int t = 0; t < T; ++t) {
    ys[t] = samples[t * stride];
    finite &= std::isfinite(ys[t]);
  }
  if (!finite) {
    // A pass that overflowed (or NaN): no meaningful quantile.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (size_t i = 0; i < levels.size(); ++i) out[i] = {nan, nan};
    return;
  }
  std::sort(ys.begin(), ys.end());
  if (noise_variance <= 0) {
    for (size_t i = 0; i < levels.size(); ++i) {
      out[i] = {EmpiricalQuantile(ys, (1.0 - levels[i]) / 2),
                EmpiricalQuantile(ys, (1.0 + levels[i]) / 2)};
    }
    return;
  }
  const double s = std::sqrt(noise_variance);
  BuildClusters(ys, s, s / kClustersPerSigma, scratch);
  // Every quantile in (0, 1) lies within the samples' range widened by the
  // window: beyond it the CDF is within 1e-19 of 0 or 1.
  const double lo = ys.front() - kWindowSigmas * s,
               hi = ys.back() + kWindowSigmas * s;
  for (size_t i = 0; i < levels.size(); ++i) {
    const double a = (1.0 - levels[i]) / 2, b = (1.0 + levels[i]) / 2;
    out[i] = {
        MixtureQuantile(*scratch, lo, hi, s, a, EmpiricalQuantile(ys, a)),
        MixtureQuantile(*scratch, lo, hi, s, b, EmpiricalQuantile(ys, b))};
  }
}

IntervalBounds PredictiveInterval(const float* samples, int64_t stride, int T,
                                  double noise_variance, double level,
                                  IntervalScratch* scratch) {
  IntervalBounds out;
  PredictiveIntervals(samples, stride, T, noise_variance, {level}, &out,
                      scratch);
  return out;
}

}  // namespace mcdrop
