// patchcall benchmarks — interleaved pairs: fenced TSC reads, per-round samples, and the
// statistics every pair benchmark reports (issue 12).
//
// A pair benchmark measures its variants A, B, ... in rounds inside one process, the order
// rotating from round to round, so drift and background load hit both sides of a pair alike.
// Each round gives one ratio A/B; the benchmark reports the median and the [min, max] of
// those per-round ratios as counters `<pair>.p50`, `<pair>.min`, `<pair>.max`
// (scripts/bench-table reads them).
#pragma once

#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace pcbench {

// rdtsc after lfence: earlier instructions have completed before the read, later ones have
// not started (lfence after it).
inline uint64_t tscBegin() {
  _mm_lfence();
  uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
// rdtscp waits for earlier instructions; the lfence keeps later ones from starting first.
inline uint64_t tscEnd() {
  unsigned aux;
  uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}

inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  auto lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}
inline double median(std::vector<double> v) { return quantile(std::move(v), 0.5); }

// One pass of `rounds` rounds over n variants, the order rotating each round and reversed
// every other round: appends to ticks[k], per round, variant k's fastest of `samples` runs in
// TSC ticks per item. `run(k)` runs variant k once (its result is kept alive); `items(k)` is
// what one run does (calls, iterations).
template <typename Run, typename Items>
void rotatingRounds(size_t n, int rounds, int samples, std::vector<std::vector<double>>& ticks, Run run, Items items) {
  for (int r = 0; r < rounds; ++r) {
    for (size_t j = 0; j < n; ++j) {
      size_t k = (r % 2 == 0) ? (r + j) % n : (r + n - 1 - j) % n;
      uint64_t best = ~uint64_t{0};
      for (int s = 0; s < samples; ++s) {
        uint64_t t0 = tscBegin();
        benchmark::DoNotOptimize(run(k));
        uint64_t t1 = tscEnd();
        best = std::min(best, t1 - t0);
      }
      ticks[k].push_back(static_cast<double>(best) / static_cast<double>(items(k)));
    }
  }
}

// Per-round ratios a[i] / b[i] as counters name.p50 / .min / .max (and .rounds).
inline void reportPairRatios(benchmark::State& state, const std::string& name, const std::vector<double>& a,
                             const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (b[i] > 0) r.push_back(a[i] / b[i]);
  }
  if (r.empty()) return;
  state.counters[name + ".p50"] = median(r);
  state.counters[name + ".min"] = *std::min_element(r.begin(), r.end());
  state.counters[name + ".max"] = *std::max_element(r.begin(), r.end());
  state.counters[name + ".rounds"] = static_cast<double>(r.size());
}

// TSC ticks per nanosecond, measured against steady_clock over `ms` milliseconds.
inline double tscPerNs(int ms = 20) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t c0 = tscBegin();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(ms)) {
  }
  uint64_t c1 = tscEnd();
  double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(c1 - c0) / ns;
}

// Wall time of fn() in ns.
template <typename Fn>
double timeNs(Fn&& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace pcbench
