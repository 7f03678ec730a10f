// f32 GEMM family: C = epilogue(A * B) with B packed once (at compile time) for one ISA.
//
// Variants (one list, kGemmVariants below; bindings, tests and benchmarks iterate over it):
//   portable  plain C++ microkernel 4x8 (compiler-vectorised for baseline x86-64 / SSE2)
//   avx2      AVX2+FMA microkernel 6x16 (12 ymm accumulators)
//   avx512    AVX-512F microkernel 14x32 (28 zmm accumulators, B rows from L2, A broadcast)
//
// Blocking (shared driver in gemm.cc): the output is cut into tasks of (M block x N block); a
// task walks K in blocks of 256 and, per MR-row tile of A, sweeps the task's B panels (L2).
// A is read in place, or first copied to an L1-resident stack tile when several B panels reuse
// it (cheap row copies; avoids 4 KiB-stride set conflicts). Tasks run on the ThreadPool;
// small problems stay on the caller.
// The epilogue is applied inside the microkernel's stores: bias and residual in the store of
// the first K block (so residual may alias C), the activation in the store of the last.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/epilogue.h"
#include "runtime/cpu_features.h"

namespace si {

class ThreadPool;

// B (K x N, or N x K when trans_b) packed for one ISA: panels of the microkernel's N-tile width
// (nr), K-major (panel p holds B[k][p*nr + j] at [k*nr + j]), zero-padded at the N edge.
class PackedB {
 public:
  PackedB(const float* b, int K, int N, bool trans_b, Isa isa);
  PackedB(PackedB&&) noexcept = default;
  PackedB& operator=(PackedB&&) noexcept = default;

  int K() const { return K_; }
  int N() const { return N_; }
  Isa isa() const { return isa_; }
  int nr() const { return nr_; }                 // panel width
  size_t bytes() const { return size_ * sizeof(float); }
  const float* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  int K_ = 0, N_ = 0, nr_ = 0;
  Isa isa_ = Isa::kPortable;
  size_t size_ = 0;
  std::unique_ptr<float, Free> data_;
};

// C[M x N] (row stride ldc) = epilogue(A[M x K] (row stride lda) * B); ep.bias has N entries
// (per column), ep.residual is M x N with row stride ldc (it may be C itself, but must not
// otherwise overlap C). pool may be nullptr (single thread). No heap allocation.
void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedB& B, float* C, int ldc,
                  const Epilogue& ep, ThreadPool* pool);

// Convenience for a B that is not constant (packs into a per-thread scratch buffer), same
// semantics; ldb is the row stride of B as stored (N-ish, or K-ish when trans_b).
void sgemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, bool trans_b,
           float* C, int ldc, const Epilogue& ep, ThreadPool* pool, Isa isa);

// `batch` independent products C_i = epilogue(A_i * B_i) (B_i transposed when trans_b), all
// M x N x K: A_i starts at A + a_offsets[i], B_i at B + b_offsets[i] (offsets in floats, so
// broadcast batch dims simply repeat an offset), C_i at C + i * M * ldc. ep.bias applies to
// every product; ep.residual is not supported (must be nullptr). Several products run at once
// on the pool (one thread each) when there are enough of them, else one after the other.
void sgemm_batched(int batch, int M, int N, int K, const float* A, const int64_t* a_offsets, int lda,
                   const float* B, const int64_t* b_offsets, int ldb, bool trans_b, float* C, int ldc,
                   const Epilogue& ep, ThreadPool* pool, Isa isa);

// Every variant of the family, reference first.
inline constexpr Isa kGemmVariants[] = {Isa::kPortable, Isa::kAvx2, Isa::kAvx512};

// ---- family internals (shared by gemm.cc and the ISA files) ----

// Geometry of one variant's microkernel.
struct GemmTile {
  int mr, nr;
};
GemmTile gemm_tile(Isa isa);

// Arguments of one microkernel call: rows mr (1..MR), columns nr (1..NR) of the C tile.
struct GemmUkArgs {
  int kc;              // K extent of this block (may be 0 when K == 0)
  const float* a;      // A tile at this K block: mr rows of kc floats, row stride lda
  int lda;
  const float* b;      // B panel at this K block: kc x NR, k-major
  float* c;            // C tile origin
  int ldc;
  int mr, nr;
  bool first, last;    // first K block: start from 0 (+bias, +residual); last: activation
  const float* bias;      // at the tile's first column, or nullptr
  const float* residual;  // at the tile's origin (row stride ldc), or nullptr
  Activation act;
  float alpha, beta;
};
using GemmUkernel = void (*)(const GemmUkArgs&);

void gemm_ukernel_portable(const GemmUkArgs& args);
void gemm_ukernel_avx2(const GemmUkArgs& args);
void gemm_ukernel_avx512(const GemmUkArgs& args);

// Single-thread FMA throughput probe (GFLOP/s) for the benchmark's peak estimate.
double gemm_fma_peak_probe_avx512(double seconds);
double gemm_fma_peak_probe_avx2(double seconds);

}  // namespace si
