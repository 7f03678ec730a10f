// Python bindings of the f32 GEMM family (tests and benchmarks): PackedB, sgemm_packed, sgemm.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/gemm.h"
#include "runtime/thread_pool.h"

namespace nb = nanobind;

namespace si {
namespace {

using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<nb::numpy, float, nb::ndim<2>>;

// A 2-D float32 matrix whose rows are contiguous (row stride >= columns).
struct Mat {
  const float* data;
  int rows, cols;
  int64_t ld;
};

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

void check_f32_cpu(const InArray& a, const char* name) {
  if (a.device_type() != nb::device::cpu::value) fail(std::string(name) + " must be a CPU array");
  if (a.dtype() != nb::dtype<float>())
    fail(std::string(name) + " must have dtype float32 (convert with .astype(np.float32))");
}

Mat as_matrix(const InArray& a, const char* name) {
  check_f32_cpu(a, name);
  if (a.ndim() != 2) fail(std::string(name) + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  const int64_t r = static_cast<int64_t>(a.shape(0)), c = static_cast<int64_t>(a.shape(1));
  if (r > INT32_MAX || c > INT32_MAX) fail(std::string(name) + " is too large");
  int64_t ld = r > 1 ? a.stride(0) : c;
  const bool rows_ok = (c <= 1 || a.stride(1) == 1) && (r <= 1 || ld >= c);
  if (!rows_ok)
    fail(std::string(name) + " must have contiguous rows (use np.ascontiguousarray)");
  if (ld < 1) ld = 1;
  return {static_cast<const float*>(a.data()), static_cast<int>(r), static_cast<int>(c), ld};
}

Isa checked_isa(const std::optional<std::string>& name) {
  if (!name) return active_isa();
  const Isa isa = parse_isa(*name);
  if (static_cast<int>(isa) > static_cast<int>(best_isa()))
    fail("ISA " + *name + " is not supported by this CPU (best: " + isa_name(best_isa()) + ")");
  return isa;
}

ThreadPool* pool_for(int num_threads) {
  if (num_threads < 1 || num_threads > 1024) fail("num_threads must be in [1, 1024]");
  if (num_threads == 1) return nullptr;
  static std::mutex mu;
  // Leaked on purpose: joining worker threads during interpreter shutdown is not worth it.
  static auto* pools = new std::map<int, std::unique_ptr<ThreadPool>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& p = (*pools)[num_threads];
  if (!p) p = std::make_unique<ThreadPool>(num_threads);
  return p.get();
}

// Validates bias / residual / out, allocates the output if needed, runs `compute(C, ldc, ep)`
// with the GIL released and returns the output array.
template <class F>
nb::object run_gemm(int M, int N, const std::optional<InArray>& bias,
                    const std::optional<InArray>& residual, const std::string& activation,
                    float alpha, float beta, const nb::object& out, F&& compute) {
  Epilogue ep;
  ep.act = activation_from_name(activation);
  ep.alpha = alpha;
  ep.beta = beta;
  if (bias) {
    check_f32_cpu(*bias, "bias");
    if (bias->ndim() != 1 || static_cast<int64_t>(bias->shape(0)) != N ||
        (N > 1 && bias->stride(0) != 1))
      fail("bias must be a contiguous 1-D array of N=" + std::to_string(N) + " values");
    ep.bias = static_cast<const float*>(bias->data());
  }
  Mat res{nullptr, 0, 0, 0};
  if (residual) {
    res = as_matrix(*residual, "residual");
    if (res.rows != M || res.cols != N)
      fail("residual must have shape (" + std::to_string(M) + ", " + std::to_string(N) + "), got (" +
           std::to_string(res.rows) + ", " + std::to_string(res.cols) + ")");
  }

  float* C;
  int64_t ldc;
  nb::object result;
  if (!out.is_none()) {
    nb::ndarray<> o;
    if (!nb::try_cast(out, o)) fail("out must be a writeable float32 array");
    if (o.device_type() != nb::device::cpu::value || o.dtype() != nb::dtype<float>() || o.ndim() != 2)
      fail("out must be a 2-D float32 CPU array");
    if (static_cast<int64_t>(o.shape(0)) != M || static_cast<int64_t>(o.shape(1)) != N)
      fail("out must have shape (" + std::to_string(M) + ", " + std::to_string(N) + ")");
    ldc = M > 1 ? o.stride(0) : N;
    if ((N > 1 && o.stride(1) != 1) || (M > 1 && ldc < N)) fail("out must have contiguous rows");
    C = static_cast<float*>(o.data());
    result = out;
  } else {
    float* buf = new float[std::max<size_t>(1, static_cast<size_t>(M) * N)];
    nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    C = buf;
    ldc = N;
    result = nb::cast(OutArray(buf, {static_cast<size_t>(M), static_cast<size_t>(N)}, owner));
  }
  if (ldc > INT32_MAX) fail("out is too large");

  {
    nb::gil_scoped_release release;
    if (res.data) {
      if (res.ld == ldc) {
        ep.residual = res.data;
      } else {
        // Different row stride: copy the residual into C and let the kernel add C to itself
        // (the family supports residual == C).
        for (int r = 0; r < M; ++r)
          std::memmove(C + r * ldc, res.data + r * res.ld, sizeof(float) * N);
        ep.residual = C;
      }
    }
    compute(C, static_cast<int>(ldc), ep);
  }
  return result;
}

}  // namespace

void bind_gemm(nb::module_& m) {
  m.def("gemm_variants", [] {
    std::vector<std::string> v;
    for (Isa isa : kGemmVariants) v.emplace_back(isa_name(isa));
    return v;
  }, "Names of every variant of the f32 GEMM family (supported by this CPU or not).");
  m.def("gemm_tile", [](const std::string& isa) {
    const GemmTile t = gemm_tile(parse_isa(isa));
    return std::make_pair(t.mr, t.nr);
  }, nb::arg("isa"), "(MR, NR) register tile of a GEMM variant.");
  m.def("_gemm_fma_peak", [](const std::string& isa, double seconds) {
    const Isa i = checked_isa(isa);
    nb::gil_scoped_release release;
    if (i == Isa::kAvx512) return gemm_fma_peak_probe_avx512(seconds);
    if (i == Isa::kAvx2) return gemm_fma_peak_probe_avx2(seconds);
    return 0.0;
  }, nb::arg("isa"), nb::arg("seconds") = 0.2,
     "Single-thread FMA throughput (GFLOP/s) of independent FMA chains: the benchmark's peak.");

  m.def("_sgemm_packed_time",
        [](const InArray& a, const PackedB& pb, int iters, int num_threads) {
          const Mat ma = as_matrix(a, "a");
          if (ma.cols != pb.K()) fail("a and packed_b disagree on K");
          if (iters < 1) fail("iters must be >= 1");
          ThreadPool* pool = pool_for(num_threads);
          std::vector<float> c(static_cast<size_t>(ma.rows) * pb.N());
          nb::gil_scoped_release release;
          const Epilogue ep;
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < iters; ++i)
            sgemm_packed(ma.rows, pb.N(), ma.cols, ma.data, static_cast<int>(ma.ld), pb, c.data(),
                         pb.N(), ep, pool);
          return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
        },
        nb::arg("a"), nb::arg("packed_b"), nb::arg("iters"), nb::arg("num_threads") = 1,
        "Seconds per sgemm_packed call, timed in a C++ loop (no Python overhead): benchmarks only.");

  nb::class_<PackedB>(m, "PackedB",
                      "B (K x N, or N x K with trans_b) packed once for one ISA's GEMM microkernel.")
      .def("__init__",
           [](PackedB* self, const InArray& b, bool trans_b, const std::optional<std::string>& isa) {
             const Isa i = checked_isa(isa);
             const Mat mb = as_matrix(b, "b");
             if (mb.rows > 1 && mb.ld != mb.cols) fail("b must be C-contiguous");
             const int K = trans_b ? mb.cols : mb.rows, N = trans_b ? mb.rows : mb.cols;
             nb::gil_scoped_release release;
             new (self) PackedB(mb.data, K, N, trans_b, i);
           },
           nb::arg("b"), nb::arg("trans_b") = false, nb::arg("isa") = nb::none())
      .def_prop_ro("K", &PackedB::K)
      .def_prop_ro("N", &PackedB::N)
      .def_prop_ro("bytes", &PackedB::bytes)
      .def_prop_ro("isa", [](const PackedB& p) { return std::string(isa_name(p.isa())); })
      .def("__repr__", [](const PackedB& p) {
        return "PackedB(K=" + std::to_string(p.K()) + ", N=" + std::to_string(p.N()) + ", isa=" +
               isa_name(p.isa()) + ", bytes=" + std::to_string(p.bytes()) + ")";
      });

  m.def("sgemm_packed",
        [](const InArray& a, const PackedB& pb, const std::optional<InArray>& bias,
           const std::optional<InArray>& residual, const std::string& activation, float alpha,
           float beta, int num_threads, const nb::object& out) {
          const Mat ma = as_matrix(a, "a");
          if (ma.cols != pb.K())
            fail("a has K=" + std::to_string(ma.cols) + " columns but packed_b has K=" +
                 std::to_string(pb.K()));
          ThreadPool* pool = pool_for(num_threads);
          return run_gemm(ma.rows, pb.N(), bias, residual, activation, alpha, beta, out,
                          [&](float* C, int ldc, const Epilogue& ep) {
                            sgemm_packed(ma.rows, pb.N(), ma.cols, ma.data, static_cast<int>(ma.ld), pb,
                                         C, ldc, ep, pool);
                          });
        },
        nb::arg("a"), nb::arg("packed_b"), nb::arg("bias") = nb::none(),
        nb::arg("residual") = nb::none(), nb::arg("activation") = "none", nb::arg("alpha") = 0.f,
        nb::arg("beta") = 0.f, nb::arg("num_threads") = 1, nb::arg("out") = nb::none(),
        "C = activation(a @ B + bias + residual) with B pre-packed; returns C (or writes `out`).");

  m.def("sgemm",
        [](const InArray& a, const InArray& b, bool trans_b, const std::optional<InArray>& bias,
           const std::optional<InArray>& residual, const std::string& activation, float alpha,
           float beta, const std::optional<std::string>& isa, int num_threads, const nb::object& out) {
          const Isa i = checked_isa(isa);
          const Mat ma = as_matrix(a, "a");
          const Mat mb = as_matrix(b, "b");
          const int K = trans_b ? mb.cols : mb.rows, N = trans_b ? mb.rows : mb.cols;
          if (ma.cols != K)
            fail("a has K=" + std::to_string(ma.cols) + " columns but b" + (trans_b ? ".T" : "") +
                 " has K=" + std::to_string(K) + " rows");
          ThreadPool* pool = pool_for(num_threads);
          return run_gemm(ma.rows, N, bias, residual, activation, alpha, beta, out,
                          [&](float* C, int ldc, const Epilogue& ep) {
                            sgemm(ma.rows, N, K, ma.data, static_cast<int>(ma.ld), mb.data,
                                  static_cast<int>(mb.ld), trans_b, C, ldc, ep, pool, i);
                          });
        },
        nb::arg("a"), nb::arg("b"), nb::arg("trans_b") = false, nb::arg("bias") = nb::none(),
        nb::arg("residual") = nb::none(), nb::arg("activation") = "none", nb::arg("alpha") = 0.f,
        nb::arg("beta") = 0.f, nb::arg("isa") = nb::none(), nb::arg("num_threads") = 1,
        nb::arg("out") = nb::none(),
        "Like sgemm_packed for a B that is not constant (packed per call); isa=None: active ISA.");
}

}  // namespace si
