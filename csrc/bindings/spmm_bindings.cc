// Python bindings of the f32 spmm family (tests and benchmarks): SparseWeights, spmm.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/spmm.h"
#include "runtime/thread_pool.h"

namespace nb = nanobind;

namespace si {
namespace {

using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<nb::numpy, float, nb::ndim<2>>;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

std::string shape_str(const InArray& a) {
  std::string s = "(";
  for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_f32_cpu(const InArray& a, const char* name) {
  if (a.device_type() != nb::device::cpu::value) fail(std::string(name) + " must be a CPU array");
  if (a.dtype() != nb::dtype<float>())
    fail(std::string(name) + " must have dtype float32 (convert with .astype(np.float32))");
}

bool c_contiguous(const InArray& a) {
  if (a.size() == 0) return true;
  int64_t expect = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) > 1 && a.stride(i) != expect) return false;
    expect *= static_cast<int64_t>(a.shape(i));
  }
  return true;
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
  // Held for the process's life (the shared registry only keeps weak references).
  static auto* pools = new std::map<int, std::shared_ptr<ThreadPool>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& p = (*pools)[num_threads];
  if (!p) p = shared_thread_pool(num_threads, false);
  return p.get();
}

// The Python-side weights: the compressed form as built, plus (for weights built without
// col_offsets, "plain": input is a [K, Q] matrix) a copy whose offsets are k * row stride,
// cached for the last stride used.
struct PySparseWeights {
  std::shared_ptr<const SparseWeights> w;
  bool plain = false;
  std::mutex mu;
  int64_t cached_stride = -1;
  std::shared_ptr<const SparseWeights> cached;

  std::shared_ptr<const SparseWeights> for_stride(int64_t stride) {
    if (!plain) return w;
    std::lock_guard<std::mutex> lock(mu);
    if (stride != cached_stride) {
      cached = std::make_shared<const SparseWeights>(w->scaled_offsets(stride));
      cached_stride = stride;
    }
    return cached;
  }

  // The generated code of the last weights (as returned by for_stride) and form it was asked for.
  std::shared_ptr<const SparseWeights> program_for;
  bool program_in_place = false;
  int program_classes = 1, program_lane = -1;
  std::shared_ptr<const GeneratedSpmm> program;

  std::shared_ptr<const GeneratedSpmm> program_of(const std::shared_ptr<const SparseWeights>& sw, bool in_place,
                                                  int column_classes, int base_lane) {
    std::lock_guard<std::mutex> lock(mu);
    if (program_for != sw || program_in_place != in_place || program_classes != column_classes ||
        program_lane != base_lane) {
      program = std::make_shared<const GeneratedSpmm>(*sw, in_place, column_classes, base_lane);
      program_for = sw;
      program_in_place = in_place;
      program_classes = column_classes;
      program_lane = base_lane;
    }
    return program;
  }
};

}  // namespace

void bind_spmm(nb::module_& m) {
  m.def("spmm_variants", [] {
    std::vector<std::string> v;
    for (Isa isa : kSpmmVariants) v.emplace_back(isa_name(isa));
    return v;
  }, "Names of every variant of the f32 spmm family (supported by this CPU or not).");
  m.attr("SPMM_MAX_K") = kSpmmMaxK;  // largest K (weight columns) of SparseWeights and the sparse ops
  m.def("spmm_tile", [](const std::string& isa) { return spmm_tile(parse_isa(isa)); },
        nb::arg("isa"), "Positions per main tile of an spmm variant.");
  m.def("spmm_panel_k", [](const std::string& isa) { return spmm_panel_k(parse_isa(isa)); },
        nb::arg("isa"), "Weight columns per panel of an spmm variant (wider K runs panel by panel).");

  nb::class_<PySparseWeights>(
      m, "SparseWeights",
      "Weights W [M, K] compressed (zeros dropped) for one ISA's spmm kernel. col_offsets[k]: "
      "element offset of input row k in the input buffer; None: the input is a [K, Q] matrix. "
      "column_panels=False: one panel whatever K (for weights only used on one position).")
      .def("__init__",
           [](PySparseWeights* self, const InArray& w, const std::optional<InArray>& col_offsets,
              const std::optional<std::string>& isa, bool column_panels) {
             const Isa i = checked_isa(isa);
             check_f32_cpu(w, "w");
             if (w.ndim() != 2) fail("w must be a 2-D [M, K] array, got shape " + shape_str(w));
             if (!c_contiguous(w)) fail("w must be C-contiguous (use np.ascontiguousarray)");
             if (w.shape(0) > INT32_MAX || w.shape(1) > INT32_MAX) fail("w is too large");
             const int M = static_cast<int>(w.shape(0)), K = static_cast<int>(w.shape(1));
             std::vector<int64_t> offs(static_cast<size_t>(K));
             const bool plain = !col_offsets.has_value();
             if (plain) {
               for (int k = 0; k < K; ++k) offs[k] = k;
             } else {
               const InArray& c = *col_offsets;
               if (c.device_type() != nb::device::cpu::value || c.dtype() != nb::dtype<int64_t>())
                 fail("col_offsets must be an int64 CPU array (convert with .astype(np.int64))");
               if (c.ndim() != 1 || static_cast<int64_t>(c.shape(0)) != K)
                 fail("col_offsets must be 1-D with K=" + std::to_string(K) + " entries, got shape " +
                      shape_str(c));
               const int64_t* src = static_cast<const int64_t*>(c.data());
               for (int k = 0; k < K; ++k) offs[k] = src[k * c.stride(0)];
               for (int k = 0; k < K; ++k)
                 if (offs[k] < 0)
                   fail("col_offsets[" + std::to_string(k) + "] = " + std::to_string(offs[k]) +
                        " is negative (offsets must be >= 0)");
             }
             const float* data = static_cast<const float*>(w.data());
             auto sw = [&] {
               nb::gil_scoped_release release;
               return std::make_shared<const SparseWeights>(data, M, K, offs.data(), i, column_panels);
             }();
             auto* p = new (self) PySparseWeights();
             p->w = std::move(sw);
             p->plain = plain;
           },
           nb::arg("w"), nb::arg("col_offsets") = nb::none(), nb::arg("isa") = nb::none(),
           nb::arg("column_panels") = true)
      .def_prop_ro("M", [](const PySparseWeights& p) { return p.w->M(); })
      .def_prop_ro("K", [](const PySparseWeights& p) { return p.w->K(); })
      .def_prop_ro("nnz", [](const PySparseWeights& p) { return p.w->nnz(); })
      .def_prop_ro("bytes", [](const PySparseWeights& p) { return p.w->bytes(); })
      .def_prop_ro("isa", [](const PySparseWeights& p) { return std::string(isa_name(p.w->isa())); })
      .def_prop_ro("plain", [](const PySparseWeights& p) { return p.plain; })
      .def_prop_ro("panels", [](const PySparseWeights& p) { return p.w->panels(); },
                   "Column panels the nonzeros are stored and computed in (ceil(K / panel_k), >= 1).")
      .def_prop_ro("offset_alignment", [](const PySparseWeights& p) { return p.w->offset_alignment(); },
                   "Largest power of two <= 16 dividing every input offset: below the ISA's vector "
                   "width, spmm packs each tile's input rows into an aligned buffer first.")
      .def("__repr__", [](const PySparseWeights& p) {
        return "SparseWeights(M=" + std::to_string(p.w->M()) + ", K=" + std::to_string(p.w->K()) +
               ", nnz=" + std::to_string(p.w->nnz()) + ", isa=" + isa_name(p.w->isa()) +
               ", bytes=" + std::to_string(p.w->bytes()) + ")";
      });

  m.def(
      "spmm",
      [](PySparseWeights& pw, const InArray& input, std::optional<int64_t> Q_opt,
         const std::optional<InArray>& bias, const std::optional<InArray>& residual,
         const std::string& activation, float alpha, float beta, int num_threads,
         const nb::object& out, bool generated, bool in_place, bool lines,
         const std::optional<std::tuple<int64_t, int64_t, int64_t, int64_t>>& map_opt,
         const std::optional<std::tuple<int, int, int, int, int, int, int, int>>& taps_opt) {
        const int M = pw.w->M(), K = pw.w->K();
        check_f32_cpu(input, "input");
        if (input.ndim() != 1 && input.ndim() != 2)
          fail("input must be 1-D or 2-D [K, Q], got shape " + shape_str(input));
        if (!c_contiguous(input)) fail("input must be C-contiguous (use np.ascontiguousarray)");
        int64_t size = 1;
        for (size_t d = 0; d < input.ndim(); ++d) size *= static_cast<int64_t>(input.shape(d));
        int64_t Q;
        if (Q_opt) {
          Q = *Q_opt;
        } else if (input.ndim() == 2) {
          Q = static_cast<int64_t>(input.shape(1));
        } else {
          fail("Q is required for a 1-D input");
        }
        if (Q < 0) fail("Q must be >= 0, got " + std::to_string(Q));
        if (Q > INT32_MAX) fail("Q is too large");
        std::shared_ptr<const SparseWeights> sw;
        SpmmInputMap map{};
        if (map_opt && pw.plain) fail("map needs weights built with col_offsets (the input's layout)");
        if (pw.plain) {
          int64_t stride = Q;
          if (input.ndim() == 2) {
            if (static_cast<int64_t>(input.shape(0)) != K)
              fail("input has " + std::to_string(input.shape(0)) + " rows but the weights have K=" +
                   std::to_string(K) + " (expected input shape (" + std::to_string(K) + ", Q))");
            stride = static_cast<int64_t>(input.shape(1));
            if (Q > stride)
              fail("Q=" + std::to_string(Q) + " exceeds the input's row length " + std::to_string(stride));
          }
          if (K > 0 && Q > 0 && (K - 1) * stride + Q > size)
            fail("input holds " + std::to_string(size) + " floats but K=" + std::to_string(K) +
                 " rows of Q=" + std::to_string(Q) + " need " + std::to_string((K - 1) * stride + Q));
          sw = pw.for_stride(stride);
        } else if (map_opt) {
          sw = pw.w;
          const auto [row_len, row_stride, img_len, img_stride] = *map_opt;
          map = {row_len, row_stride, img_len, img_stride};
          if (taps_opt)
            std::tie(map.taps_h, map.taps_w, map.in_h, map.in_w, map.pad_top, map.pad_left, map.dil_h, map.dil_w) =
                *taps_opt;
          check_map(map, *sw, "spmm");
          // (With implicit padding an output row may be wider than an input row: its reads are clipped.)
          if (!taps_opt && (row_stride < row_len || img_stride < (img_len / row_len - 1) * row_stride + row_len))
            fail("map: rows must not overlap (row_stride >= row_len) nor images (img_stride >= (img_len / row_len "
                 "- 1) * row_stride + row_len)");
          if (taps_opt) {
            if (map.taps_h < 1) fail("taps needs taps_h and taps_w >= 1 (omit it for no implicit padding)");
            // Column k reads its plane (col_offset minus the tap's place in the padded window, from
            // the input's start) at rows [0, in_h) x columns [0, in_w) of each image.
            const int64_t images = (Q + img_len - 1) / img_len, reach = (images - 1) * img_stride + int64_t(map.in_h) * map.in_w;
            const int32_t* off = sw->col_off();
            for (int k = 0; k < K && Q > 0; ++k) {
              const int64_t base = off[k] - (map.tap_dy(k) * map.in_w + map.tap_dx(k));
              if (base < 0 || base + reach > size)
                fail("taps: column " + std::to_string(k) + "'s plane (col_offset " + std::to_string(off[k]) +
                     " less its tap's offset) spans [" + std::to_string(base) + ", " + std::to_string(base + reach) +
                     ") of an input of " + std::to_string(size) + " floats");
            }
          } else if (K > 0 && Q > 0) {
            SpmmArgs mapped{};
            mapped.map = map;
            const int64_t src = spmm_source(mapped, Q - 1);  // the furthest position: rows and images ascend
            if (sw->max_col_offset() + src + 1 > size)
              fail("col_offsets and the map reach beyond the input: max col_offset " +
                   std::to_string(sw->max_col_offset()) + " + the last position's offset " + std::to_string(src) +
                   " + 1 > input size " + std::to_string(size));
          }
        } else {
          sw = pw.w;
          if (taps_opt) fail("taps needs a map (row_len, row_stride, img_len, img_stride)");
          if (K > 0 && Q > 0 && sw->max_col_offset() + Q > size)
            fail("col_offsets reach beyond the input: max col_offset " + std::to_string(sw->max_col_offset()) +
                 " + Q=" + std::to_string(Q) + " > input size " + std::to_string(size));
        }

        Epilogue ep;
        ep.act = activation_from_name(activation);
        ep.alpha = alpha;
        ep.beta = beta;
        if (bias) {
          check_f32_cpu(*bias, "bias");
          if (bias->ndim() != 1 || static_cast<int64_t>(bias->shape(0)) != M || (M > 1 && bias->stride(0) != 1))
            fail("bias must be a contiguous 1-D array of M=" + std::to_string(M) + " values, got shape " +
                 shape_str(*bias));
          ep.bias = static_cast<const float*>(bias->data());
        }
        const float* res = nullptr;
        int64_t res_ld = 0;
        if (residual) {
          check_f32_cpu(*residual, "residual");
          if (residual->ndim() != 2 || static_cast<int64_t>(residual->shape(0)) != M ||
              static_cast<int64_t>(residual->shape(1)) != Q)
            fail("residual must have shape (" + std::to_string(M) + ", " + std::to_string(Q) + "), got " +
                 shape_str(*residual));
          res_ld = M > 1 ? residual->stride(0) : Q;
          if ((Q > 1 && residual->stride(1) != 1) || (M > 1 && res_ld < Q))
            fail("residual must have contiguous rows");
          res = static_cast<const float*>(residual->data());
        }

        float* C;
        int64_t ldo;
        nb::object result;
        if (!out.is_none()) {
          nb::ndarray<> o;
          if (!nb::try_cast(out, o)) fail("out must be a writeable float32 array");
          if (o.device_type() != nb::device::cpu::value || o.dtype() != nb::dtype<float>() || o.ndim() != 2)
            fail("out must be a 2-D float32 CPU array");
          if (static_cast<int64_t>(o.shape(0)) != M || static_cast<int64_t>(o.shape(1)) != Q)
            fail("out must have shape (" + std::to_string(M) + ", " + std::to_string(Q) + ")");
          ldo = M > 1 ? o.stride(0) : Q;
          if ((Q > 1 && o.stride(1) != 1) || (M > 1 && ldo < Q)) fail("out must have contiguous rows");
          C = static_cast<float*>(o.data());
          result = out;
        } else {
          float* buf = new float[std::max<size_t>(1, static_cast<size_t>(M) * Q)];
          nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
          C = buf;
          ldo = Q;
          result = nb::cast(OutArray(buf, {static_cast<size_t>(M), static_cast<size_t>(Q)}, owner));
        }
        ThreadPool* pool = pool_for(num_threads);
        // With implicit padding the offsets count from the padded window's corner (SpmmInputMap).
        const float* in = map.corner(static_cast<const float*>(input.data()));
        if (in_place && !generated) fail("in_place=True needs generated=True");
        if (lines && !in_place) fail("lines=True needs in_place=True");
        // In place with taps: lane masks per tap column (GeneratedSpmm's column classes).
        const int classes = in_place && taps_opt ? std::max(1, map.taps_w) : 1;
        // lines: the code made for vectors starting where this input's first one does.
        const int lane = lines ? int(reinterpret_cast<uintptr_t>(in) / sizeof(float) % 16) : -1;
        const std::shared_ptr<const GeneratedSpmm> program =
            generated ? pw.program_of(sw, in_place, classes, lane) : nullptr;
        {
          nb::gil_scoped_release release;
          if (res) {
            if (res_ld == ldo) {
              ep.residual = res;
            } else {  // different row stride: copy into out, then add out to itself
              for (int r = 0; r < M; ++r) std::memmove(C + r * ldo, res + r * res_ld, sizeof(float) * Q);
              ep.residual = C;
            }
          }
          const SpmmInputMap* m = map_opt ? &map : nullptr;
          if (program)
            program->run(in, Q, C, ldo, ep, pool, m);
          else
            spmm_f32(*sw, in, Q, C, ldo, ep, pool, m);
        }
        return result;
      },
      nb::arg("weights"), nb::arg("input"), nb::arg("Q") = nb::none(), nb::arg("bias") = nb::none(),
      nb::arg("residual") = nb::none(), nb::arg("activation") = "none", nb::arg("alpha") = 0.f,
      nb::arg("beta") = 0.f, nb::arg("num_threads") = 1, nb::arg("out") = nb::none(),
      nb::arg("generated") = false, nb::arg("in_place") = false, nb::arg("lines") = false, nb::arg("map") = nb::none(),
      nb::arg("taps") = nb::none(),
      "out[M, Q] = activation(W @ In + bias[:, None] + residual), input row k at "
      "input.flat[col_offsets[k]:][:Q] (or input[k, :Q] for weights built without col_offsets). "
      "generated=True: by code generated for these weights (avx512 weights only), once per weights "
      "and input row stride; in_place=True: code that reads the input in place instead of packed "
      "copies; lines=True: in-place code that loads whole 64-byte lines, made for vectors that start where "
      "the input's first one does (its row and image strides multiples of 16 floats, a line of slack read on "
      "both sides). map=(row_len, row_stride, img_len, img_stride): position q = img * img_len + row * row_len + col "
      "reads input.flat[col_offsets[k] + img * img_stride + row * row_stride + col] (a conv's output pixels over "
      "padded planes: what the conv ops run); needs col_offsets. taps=(taps_h, taps_w, in_h, in_w, pad_top, "
      "pad_left, dil_h, dil_w) with a map: implicit zero padding, the input is the unpadded planes (row_stride == "
      "in_w) and weight column k, tap (r, s) = ((k // taps_w) % taps_h, k % taps_w), reads "
      "input.flat[col_offsets[k] + src(q) - pad_top * in_w - pad_left] where its pixel lies in the plane, else 0 "
      "(what stride-1 conv ops run when their kernel packs its tiles).");
}

}  // namespace si
