// Copyright 2026 The mcdrop Authors.

#include "core/mask.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#define MCDROP_HAVE_AES_KERNEL 1
#endif

namespace mcdrop {
namespace {

constexpr uint32_t kRefineBit = 0x80000000u;

// What the kernels need of a DropoutMask.
struct KernelParams {
  const std::array<ars::Block, ars::kRounds + 1>* round_keys;
  uint32_t layer;
  uint8_t keep_max, tie;
  bool has_ties;
  uint32_t threshold_lo;
  float scale;
};

#if defined(MCDROP_HAVE_AES_KERNEL)
// The kernel (SSE2 and AES intrinsics) is compiled for AES and only called
// when the CPU has it.
#define MCDROP_AES_TARGET __attribute__((target("aes")))

// Columns whose blocks are generated together: eight independent AES chains
// cover the instruction's latency (4-5 cycles at a throughput of 1-2 a cycle).
constexpr int kChains = 8;

MCDROP_AES_TARGET inline void LoadRoundKeys(
    const std::array<ars::Block, ars::kRounds + 1>& keys,
    __m128i (&rk)[ars::kRounds + 1]) {
  for (int r = 0; r <= ars::kRounds; ++r)
    rk[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[r].data()));
}

// ARS-4x32-7 of K counters at once.
template <int K>
MCDROP_AES_TARGET inline void Ars(__m128i (&v)[K],
                                  const __m128i (&rk)[ars::kRounds + 1]) {
  for (int i = 0; i < K; ++i) v[i] = _mm_xor_si128(v[i], rk[0]);
  for (int r = 1; r < ars::kRounds; ++r) {
    for (int i = 0; i < K; ++i) v[i] = _mm_aesenc_si128(v[i], rk[r]);
  }
  for (int i = 0; i < K; ++i)
    v[i] = _mm_aesenclast_si128(v[i], rk[ars::kRounds]);
}

// The counter (0, sample, row, layer) of a column; `layer_word` is
// (0, 0, 0, layer).
MCDROP_AES_TARGET inline __m128i ColumnCounter(const MaskColumn& col,
                                               __m128i layer_word) {
  static_assert(sizeof(MaskColumn) == 8 && offsetof(MaskColumn, row) == 0 &&
                    offsetof(MaskColumn, sample) == 4,
                "MaskColumn is loaded as (row, sample)");
  const __m128i rs = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(&col));
  return _mm_or_si128(_mm_shuffle_epi32(rs, _MM_SHUFFLE(3, 0, 1, 2)),
                      layer_word);
}

// Ties: units whose byte equals the threshold's high byte (probability 1/256
// each). They were provisionally kept; the low 24 bits of their uniform, from
// a refinement block, settle them. The first stage lists them without a
// branch (a column has one too often for branch prediction); Settle() draws
// the refinement blocks kChains at a time so the AES chains run in parallel
// and clears the keep bytes of the units that are dropped.
class Ties {
 public:
  MCDROP_AES_TARGET Ties(const KernelParams& p,
                         const __m128i (&rk)[ars::kRounds + 1], int units,
                         const MaskColumn* columns, uint8_t* keep)
      : p_(p), rk_(rk), units_(units), columns_(columns), keep_(keep) {}

  // Bit k of `mask` set: unit first + k of `column` is a tie (bits for units
  // at or past `units` must be clear).
  MCDROP_AES_TARGET void Add(int column, int first, uint64_t mask) {
    list_[listed_] = {column, first, mask};
    listed_ += mask != 0;
    if (listed_ == kList) Settle();
  }

  MCDROP_AES_TARGET void Settle() {
    for (int e = 0; e < listed_; ++e) {
      const Entry& t = list_[e];
      const MaskColumn& col = columns_[t.column];
      for (uint64_t m = t.mask; m; m &= m - 1) {
        const int unit = t.first + __builtin_ctzll(m);
        r_[n_] = _mm_setr_epi32(unit / 4, static_cast<int>(col.sample),
                                static_cast<int>(col.row),
                                static_cast<int>(p_.layer | kRefineBit));
        word_[n_] = unit % 4;
        target_[n_] = keep_ + static_cast<int64_t>(t.column) * units_ + unit;
        if (++n_ == kChains) Draw();
      }
    }
    listed_ = 0;
    Draw();
  }

 private:
  struct Entry {
    int column, first;
    uint64_t mask;
  };
  static constexpr int kList = 64;

  MCDROP_AES_TARGET void Draw() {
    if (n_ == 0) return;
    for (int i = n_; i < kChains; ++i) r_[i] = r_[0];
    Ars<kChains>(r_, rk_);
    for (int i = 0; i < n_; ++i) {
      alignas(16) uint32_t words[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(words), r_[i]);
      if ((words[word_[i]] & 0xFFFFFFu) >= p_.threshold_lo) *target_[i] = 0;
    }
    n_ = 0;
  }

  const KernelParams& p_;
  const __m128i (&rk_)[ars::kRounds + 1];
  const int units_;
  const MaskColumn* const columns_;
  uint8_t* const keep_;
  Entry list_[kList];
  int listed_ = 0;
  __m128i r_[kChains];
  int word_[kChains];
  uint8_t* target_[kChains];
  int n_ = 0;
};

// Bits [0, n) set (n >= 0).
inline uint64_t LowBits(int n) {
  return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
}

// First stage of blocks v[0, n) of one column, blocks b0, b0 + 1, ...: stores
// the provisional keep bytes (0xFF kept, 0x00 dropped; unsigned
// byte <= keep_max <=> max(byte, keep_max) == keep_max) of each block's 16
// units whole at keep + 16 * b (past the column's units the next column's
// stores overwrite them) and lists the ties.
template <int kMax>
MCDROP_AES_TARGET inline void FirstStageColumn(
    const __m128i* v, int n, int b0, int column, int units, __m128i keep_max,
    __m128i tie_value, bool with_ties, uint8_t* keep, Ties* ties) {
  uint64_t mask[(kMax + 3) / 4] = {};
  for (int i = 0; i < n; ++i) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(keep + 16 * (b0 + i)),
                     _mm_cmpeq_epi8(_mm_max_epu8(v[i], keep_max), keep_max));
    mask[i / 4] |= static_cast<uint64_t>(static_cast<uint32_t>(
                       _mm_movemask_epi8(_mm_cmpeq_epi8(v[i], tie_value))))
                   << (16 * (i % 4));
  }
  if (!with_ties) return;
  for (int w = 0; w < (n + 3) / 4; ++w) {
    const int first = 16 * b0 + 64 * w;
    ties->Add(column, first, mask[w] & LowBits(units - first));
  }
}

// First stage for layers of kBlocks <= kChains blocks (up to 16 * kBlocks
// units): kChains / kBlocks columns at a time, all their blocks in parallel.
template <int kBlocks>
MCDROP_AES_TARGET void FirstStageNarrow(const KernelParams& p,
                                        const __m128i (&rk)[ars::kRounds + 1],
                                        int units, const MaskColumn* columns,
                                        int num_columns, uint8_t* keep,
                                        Ties* ties) {
  constexpr int C = kChains / kBlocks;  // columns at a time
  const __m128i layer_word = _mm_setr_epi32(0, 0, 0, static_cast<int>(p.layer));
  const __m128i keep_max = _mm_set1_epi8(static_cast<char>(p.keep_max));
  const __m128i tie_value = _mm_set1_epi8(static_cast<char>(p.tie));
  for (int base = 0; base < num_columns; base += C) {
    const int nc = std::min(C, num_columns - base);
    __m128i v[C * kBlocks];
    for (int j = 0; j < C; ++j) {
      // Columns beyond nc repeat the last; their output is not stored.
      const __m128i ctr =
          ColumnCounter(columns[base + std::min(j, nc - 1)], layer_word);
      for (int b = 0; b < kBlocks; ++b)
        v[j * kBlocks + b] = _mm_add_epi32(ctr, _mm_cvtsi32_si128(b));
    }
    Ars<C * kBlocks>(v, rk);
    for (int j = 0; j < nc; ++j) {
      FirstStageColumn<kBlocks>(
          v + j * kBlocks, kBlocks, 0, base + j, units, keep_max, tie_value,
          p.has_ties, keep + static_cast<int64_t>(base + j) * units, ties);
    }
  }
}

// The same for wider layers: one column at a time, kChains blocks at once.
MCDROP_AES_TARGET void FirstStageWide(const KernelParams& p,
                                      const __m128i (&rk)[ars::kRounds + 1],
                                      int units, const MaskColumn* columns,
                                      int num_columns, uint8_t* keep,
                                      Ties* ties) {
  const int blocks = (units + 15) / 16;
  const __m128i layer_word = _mm_setr_epi32(0, 0, 0, static_cast<int>(p.layer));
  const __m128i keep_max = _mm_set1_epi8(static_cast<char>(p.keep_max));
  const __m128i tie_value = _mm_set1_epi8(static_cast<char>(p.tie));
  for (int c = 0; c < num_columns; ++c) {
    const __m128i ctr = ColumnCounter(columns[c], layer_word);
    for (int b0 = 0; b0 < blocks; b0 += kChains) {
      const int n = std::min(kChains, blocks - b0);
      __m128i v[kChains];
      for (int i = 0; i < kChains; ++i)
        v[i] = _mm_add_epi32(ctr, _mm_cvtsi32_si128(b0 + std::min(i, n - 1)));
      Ars<kChains>(v, rk);
      FirstStageColumn<kChains>(v, n, b0, c, units, keep_max, tie_value,
                                p.has_ties,
                                keep + static_cast<int64_t>(c) * units, ties);
    }
  }
}

MCDROP_AES_TARGET void KeepBytesAesNi(const KernelParams& p, int units,
                                      const MaskColumn* columns,
                                      int num_columns, uint8_t* keep) {
  __m128i rk[ars::kRounds + 1];
  LoadRoundKeys(*p.round_keys, rk);
  Ties ties(p, rk, units, columns, keep);
  switch ((units + 15) / 16) {
#define MCDROP_NARROW(B)                                                  \
  case B:                                                                 \
    FirstStageNarrow<B>(p, rk, units, columns, num_columns, keep, &ties); \
    break;
    MCDROP_NARROW(1)
    MCDROP_NARROW(2)
    MCDROP_NARROW(3)
    MCDROP_NARROW(4)
    MCDROP_NARROW(5)
    MCDROP_NARROW(6)
    MCDROP_NARROW(7)
    MCDROP_NARROW(8)
#undef MCDROP_NARROW
    default:
      FirstStageWide(p, rk, units, columns, num_columns, keep, &ties);
  }
  ties.Settle();
}
#endif  // MCDROP_HAVE_AES_KERNEL

// x[j] *= keep[j] ? scale : 0 for j in [0, n).
inline void MultiplyByKeepBytes(float* x, const uint8_t* keep, int64_t n,
                                float scale) {
  int64_t j = 0;
#if defined(__AVX2__)
  const __m256 s = _mm256_set1_ps(scale);
  for (; j + 8 <= n; j += 8) {
    const __m256 m = _mm256_and_ps(
        _mm256_castsi256_ps(_mm256_cvtepi8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(keep + j)))),
        s);
    _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), m));
  }
#endif
  for (; j < n; ++j) x[j] *= keep[j] ? scale : 0.0f;
}

}  // namespace

DropoutMask::DropoutMask(uint64_t seed, uint32_t layer, float drop_rate)
    : round_keys_(ars::RoundKeys({static_cast<uint32_t>(seed),
                                  static_cast<uint32_t>(seed >> 32), 0, 0})),
      layer_(layer & ~kRefineBit) {
  const double q = 1.0 - static_cast<double>(drop_rate);
  // drop_rate is a float in (0, 1), so q >= 2^-24 and the threshold >= 256.
  threshold_ = std::clamp<uint64_t>(
      static_cast<uint64_t>(std::llround(q * 4294967296.0)), 1, 0xFFFFFFFFull);
  threshold_hi_ = static_cast<uint8_t>(threshold_ >> 24);
  threshold_lo_ = static_cast<uint32_t>(threshold_ & 0xFFFFFFu);
  has_ties_ = threshold_lo_ != 0;
  // Without ties threshold_ is a multiple of 2^24 and >= 1, so hi >= 1.
  keep_max_ =
      has_ties_ ? threshold_hi_ : static_cast<uint8_t>(threshold_hi_ - 1);
  scale_ = static_cast<float>(1.0 / q);
}

uint32_t DropoutMask::RefinementBits(uint32_t row, uint32_t sample,
                                     uint32_t unit) const {
  return ars::Generate({unit / 4, sample, row, layer_ | kRefineBit},
                       round_keys_)[unit % 4] &
         0xFFFFFFu;
}

bool DropoutMask::Decide(uint32_t byte, uint32_t row, uint32_t sample,
                         uint32_t unit) const {
  if (byte != threshold_hi_) return byte < threshold_hi_;
  return RefinementBits(row, sample, unit) < threshold_lo_;
}

bool DropoutMask::Kept(uint32_t row, uint32_t sample, uint32_t unit) const {
  const ars::Block r =
      ars::Generate({unit / 16, sample, row, layer_}, round_keys_);
  return Decide((r[(unit % 16) / 4] >> (8 * (unit % 4))) & 0xFF, row, sample,
                unit);
}

void DropoutMask::KeepBytesPortable(int units, const MaskColumn* columns,
                                    int num_columns, uint8_t* keep) const {
  for (int c = 0; c < num_columns; ++c) {
    const MaskColumn& col = columns[c];
    uint8_t* dst = keep + static_cast<int64_t>(c) * units;
    for (int first = 0; first < units; first += 16) {
      const ars::Block r = ars::Generate(
          {static_cast<uint32_t>(first / 16), col.sample, col.row, layer_},
          round_keys_);
      for (int k = 0; k < std::min(16, units - first); ++k) {
        const uint32_t byte = (r[k / 4] >> (8 * (k % 4))) & 0xFF;
        dst[first + k] =
            Decide(byte, col.row, col.sample, first + k) ? 0xFF : 0x00;
      }
    }
  }
}

void DropoutMask::Apply(float* h, int64_t ld, int units,
                        const MaskColumn* columns, int num_columns,
                        uint8_t* scratch, Generator generator) const {
  if (num_columns <= 0 || units <= 0) return;
#if defined(MCDROP_HAVE_AES_KERNEL)
  if (generator == Generator::kAuto && ars::HaveAesNi()) {
    const KernelParams p = {&round_keys_,  layer_,    keep_max_,
                            threshold_hi_, has_ties_, threshold_lo_,
                            scale_};
    KeepBytesAesNi(p, units, columns, num_columns, scratch);
  } else {
    KeepBytesPortable(units, columns, num_columns, scratch);
  }
#else
  (void)generator;
  KeepBytesPortable(units, columns, num_columns, scratch);
#endif
  if (ld == units) {  // contiguous: one flat pass
    MultiplyByKeepBytes(h, scratch, static_cast<int64_t>(num_columns) * units,
                        scale_);
    return;
  }
  for (int c = 0; c < num_columns; ++c) {
    MultiplyByKeepBytes(h + c * ld, scratch + static_cast<int64_t>(c) * units,
                        units, scale_);
  }
}

#if defined(MCDROP_HAVE_AES_KERNEL)
namespace {
MCDROP_AES_TARGET void GenerateArsBlocksAes(
    const ars::Block* counters, int64_t n,
    const std::array<ars::Block, ars::kRounds + 1>& keys, ars::Block* out) {
  __m128i rk[ars::kRounds + 1];
  LoadRoundKeys(keys, rk);
  int64_t i = 0;
  for (; i + kChains <= n; i += kChains) {
    __m128i v[kChains];
    for (int k = 0; k < kChains; ++k) {
      v[k] = _mm_loadu_si128(
          reinterpret_cast<const __m128i*>(counters[i + k].data()));
    }
    Ars(v, rk);
    for (int k = 0; k < kChains; ++k) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out[i + k].data()), v[k]);
    }
  }
  for (; i < n; ++i) {
    __m128i v[1] = {
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(counters[i].data()))};
    Ars(v, rk);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[i].data()), v[0]);
  }
}
}  // namespace
#endif  // MCDROP_HAVE_AES_KERNEL

void GenerateArsBlocks(const ars::Block* counters, int64_t n,
                       const std::array<ars::Block, ars::kRounds + 1>& keys,
                       ars::Block* out) {
#if defined(MCDROP_HAVE_AES_KERNEL)
  if (ars::HaveAesNi()) return GenerateArsBlocksAes(counters, n, keys, out);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = ars::Generate(counters[i], keys);
}

}  // namespace mcdrop
