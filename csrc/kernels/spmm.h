// f32 SPARSE x DENSE family (spmm): out[M x Q] = epilogue(W[M x K] (sparse) * In), where input
// row k is a run of Q contiguous floats at `in + col_offset[k]` (channel-major activations:
// spatial positions x batch, or tokens). XNNPACK's f32-spmm idea, widened to AVX2/AVX-512: the
// kernel vectorises over Q and, per nonzero weight, broadcasts it and FMAs it against MR
// contiguous input positions.
//
// Variants (one list, kSpmmVariants below; bindings, tests and benchmarks iterate over it):
//   portable  plain C++ loops over a 64-position tile (compiler-vectorised), the reference
//   avx2      MR = 32 positions (4 ymm) x 2 nonzeros in flight (8 accumulators)
//   avx512    MR = 64 positions (4 zmm) x 2 nonzeros in flight (8 accumulators)
// Q edges: 32/16-wide (AVX-512) / 16/8-wide (AVX2) remainder tiles, last vector masked.
//
// Storage (all ISAs alike): per output row m, its nonzeros as (int32 element offset into `in`,
// float value) pairs in one interleaved stream (one sequential read per nonzero: the offset
// is used as an index register, the value as an embedded-broadcast FMA operand), plus int64
// row starts (M + 1). Offsets are absolute (col_offsets[k] of the nonzero's column), so the
// inner loop has no pointer-chasing dependency.
//
// Driver (spmm.cc): the output is cut into tasks of (Q block x row block), row blocks balanced
// by nnz (binary search on the row starts: no allocation). A task walks its Q block tile by
// tile and, per tile, sweeps its rows: the input slice of one tile (K x 64 floats) stays in
// L1/L2 while the rows reuse it. Epilogue (bias, residual, activation) in the store; residual
// may be `out` itself. Small problems stay on the caller's thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/epilogue.h"
#include "runtime/cpu_features.h"

namespace si {

class ThreadPool;

// One stored nonzero: element offset of its input row, and its weight.
struct SpmmEntry {
  int32_t off;
  float w;
};

// W: M x K dense row-major weights, compressed at construction (exact zeros dropped) for one
// ISA. col_offsets[k] (k in [0, K)): element offset of input row k relative to the `in`
// pointer given to spmm_f32 (k * Q for a plain [K, Q] matrix; c * plane + r * padded_width + s
// for a tap of a stride-1 conv over a padded plane). Offsets must be in [0, INT32_MAX]
// (std::invalid_argument otherwise). An unsupported ISA also throws std::invalid_argument.
class SparseWeights {
 public:
  SparseWeights(const float* w, int M, int K, const int64_t* col_offsets, Isa isa);

  int M() const { return M_; }
  int K() const { return K_; }
  size_t nnz() const { return entries_.size(); }
  Isa isa() const { return isa_; }
  // Memory of the compressed form: 8 bytes per nonzero + 8 bytes per row (+ 8).
  size_t bytes() const {
    return entries_.size() * sizeof(SpmmEntry) + row_start_.size() * sizeof(int64_t);
  }
  // Largest col_offsets[k] (over all k, -1 when K == 0): the input must hold at least
  // max_col_offset() + Q floats.
  int64_t max_col_offset() const { return max_col_offset_; }

  // The same weights with every offset multiplied by `factor` (for weights built with
  // col_offsets[k] = k: the plain [K, Q] layout once its row stride is known). Throws
  // std::invalid_argument when an offset would no longer fit int32.
  SparseWeights scaled_offsets(int64_t factor) const;

  const SpmmEntry* entries() const { return entries_.data(); }
  const int64_t* row_start() const { return row_start_.data(); }  // M + 1 values

 private:
  SparseWeights() = default;
  int M_ = 0, K_ = 0;
  Isa isa_ = Isa::kPortable;
  int64_t max_col_offset_ = -1;
  std::vector<SpmmEntry> entries_;
  std::vector<int64_t> row_start_;
};

// out[m * ldo + q] = act(sum_k W[m][k] * in[col_offsets[k] + q] + bias[m] + residual[m * ldo + q])
// for m in [0, M), q in [0, Q). ep.bias has M entries (per output row), ep.residual has the
// output's layout and row stride ldo and may be `out` itself (but must not otherwise overlap
// it). pool may be nullptr (single thread). Q == 0 is a no-op. No heap allocation.
void spmm_f32(const SparseWeights& W, const float* in, int64_t Q, float* out, int64_t ldo,
              const Epilogue& ep, ThreadPool* pool);

// Every variant of the family, reference first.
inline constexpr Isa kSpmmVariants[] = {Isa::kPortable, Isa::kAvx2, Isa::kAvx512};

// ---- family internals (shared by spmm.cc and the ISA files) ----

// One task: rows [m0, m1) x positions [q0, q1) of the output.
struct SpmmArgs {
  const SpmmEntry* entries;
  const int64_t* row_start;
  const float* in;
  float* out;
  int64_t ldo;
  int64_t q0, q1;
  int m0, m1;
  const float* bias;      // M values or nullptr
  const float* residual;  // output layout, or nullptr
  Activation act;
  float alpha, beta;
};
using SpmmKernel = void (*)(const SpmmArgs&);

void spmm_kernel_portable(const SpmmArgs& a);
void spmm_kernel_avx2(const SpmmArgs& a);
void spmm_kernel_avx512(const SpmmArgs& a);

// Positions per main tile of a variant (64 / 32 / 64).
int spmm_tile(Isa isa);

}  // namespace si
