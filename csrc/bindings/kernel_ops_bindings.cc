// Python constructors of the plan ops over the conv / gemm / pool / reorder kernel families.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "bindings/bindings.h"
#include "kernels/softmax.h"
#include "ops/kernel_ops.h"
#include "ops/sparse_ops.h"

namespace nb = nanobind;

namespace si {
namespace {

using CArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;

int at(const std::vector<int>& v, size_t i, const char* what) {
  if (i >= v.size()) throw std::invalid_argument(std::string(what) + " has too few entries");
  return v[i];
}

ConvParams conv_params(const char* op, const CArray& w, const std::optional<CArray>& bias,
                       const std::vector<int>& strides, const std::vector<int>& pads, const std::vector<int>& dil,
                       int groups, const std::vector<int>& in_shape) {
  if (w.ndim() != 4) throw std::invalid_argument(std::string(op) + ": weight must be OIHW (4-D)");
  if (in_shape.size() != 4) throw std::invalid_argument(std::string(op) + ": input shape must be NCHW");
  ConvParams p;
  p.N = in_shape[0]; p.C = in_shape[1]; p.H = in_shape[2]; p.W = in_shape[3];
  p.K = int(w.shape(0)); p.R = int(w.shape(2)); p.S = int(w.shape(3));
  p.stride_h = at(strides, 0, "strides"); p.stride_w = at(strides, 1, "strides");
  p.pad_top = at(pads, 0, "pads"); p.pad_left = at(pads, 1, "pads");
  p.pad_bottom = at(pads, 2, "pads"); p.pad_right = at(pads, 3, "pads");
  p.dil_h = at(dil, 0, "dilations"); p.dil_w = at(dil, 1, "dilations");
  p.groups = groups;
  if (bias && bias->size() != size_t(p.K)) throw std::invalid_argument(std::string(op) + ": bias needs K values");
  if (size_t(p.C) != size_t(w.shape(1)) * size_t(std::max(groups, 1)))
    throw std::invalid_argument(std::string(op) + ": weight input channels x groups != input channels");
  return p;
}

// What both sparse ops offer about their weights (SparseOp).
template <class Cls>
Cls& sparse_op_members(Cls& cls) {
  return cls.def_prop_ro("nnz", &SparseOp::nnz)
      .def_prop_ro("generated_bytes", &SparseOp::generated_bytes,
                   "Bytes of the generated code and its copy of the weights (0 without).")
      .def_prop_ro("generated_in_place", &SparseOp::generated_in_place,
                   "Whether the generated code reads the input in place (else packed copies per tile).")
      .def("drop_generated", &SparseOp::drop_generated,
           "Frees the generated code: the row kernel over the compressed weights runs from then on.")
      .def_prop_ro("releasable_bytes", &SparseOp::releasable_bytes,
                   "Bytes release_compressed() frees (0 without generated code).")
      .def("release_compressed", &SparseOp::release_compressed,
           "With generated code: frees the compressed nonzeros it was made from (then it cannot be dropped).");
}

}  // namespace

void bind_kernel_ops(nb::module_& m) {
  nb::class_<ConvOp, Op>(m, "ConvOp")
      .def("__init__",
           [](ConvOp* self, CArray w, std::optional<CArray> bias, std::vector<int> strides, std::vector<int> pads,
              std::vector<int> dil, int groups, std::vector<int> in_shape, const std::string& act, float alpha,
              float beta, const std::string& isa, bool has_residual) {
             const ConvParams p = conv_params("ConvOp", w, bias, strides, pads, dil, groups, in_shape);
             new (self) ConvOp(p, w.data(), bias ? bias->data() : nullptr, activation_from_name(act), alpha, beta,
                               parse_isa(isa), has_residual);
           },
           nb::arg("weight"), nb::arg("bias").none(), nb::arg("strides"), nb::arg("pads"), nb::arg("dilations"),
           nb::arg("groups"), nb::arg("input_shape"), nb::arg("activation"), nb::arg("alpha"), nb::arg("beta"),
           nb::arg("isa"), nb::arg("has_residual"))
      .def_prop_ro("input_is_nchw", &ConvOp::input_is_nchw);

  nb::class_<GemmOp, Op>(m, "GemmOp")
      .def("__init__",
           [](GemmOp* self, int M, CArray w, std::optional<CArray> bias, const std::string& act, float alpha,
              float beta, const std::string& isa, bool has_residual) {
             if (w.ndim() != 2) throw std::invalid_argument("GemmOp: weight must be K x N");
             const int K = int(w.shape(0)), N = int(w.shape(1));
             if (bias && bias->size() != size_t(N)) throw std::invalid_argument("GemmOp: bias needs N values");
             new (self) GemmOp(M, w.data(), K, N, bias ? bias->data() : nullptr, activation_from_name(act), alpha,
                               beta, parse_isa(isa), has_residual);
           },
           nb::arg("m"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("activation"), nb::arg("alpha"),
           nb::arg("beta"), nb::arg("isa"), nb::arg("has_residual"));

  nb::class_<MatMulOp, Op>(m, "MatMulOp")
      .def("__init__", [](MatMulOp* self, std::vector<int64_t> a_shape, std::vector<int64_t> b_shape, bool trans_b,
                          const std::string& isa) {
        new (self) MatMulOp(a_shape, b_shape, trans_b, parse_isa(isa));
      }, nb::arg("a_shape"), nb::arg("b_shape"), nb::arg("trans_b"), nb::arg("isa"));

  nb::class_<LayerNormOp, Op>(m, "LayerNormOp")
      .def("__init__", [](LayerNormOp* self, int64_t rows, int64_t n, float eps, bool has_beta, bool stats,
                          const std::string& isa) {
        const Isa i = parse_isa(isa);
        if (int(i) > int(best_isa()))
          throw std::invalid_argument("LayerNormOp: ISA " + isa + " is not supported by this CPU");
        new (self) LayerNormOp(rows, n, eps, has_beta, stats, i);
      }, nb::arg("rows"), nb::arg("n"), nb::arg("epsilon"), nb::arg("has_beta"), nb::arg("stats"), nb::arg("isa"),
      "Layer normalisation of each row; with stats the op also writes each row's mean and 1/std.");
  m.def("norm_variants", [] {
    std::vector<std::string> v;
    for (Isa isa : kNormVariants) v.emplace_back(isa_name(isa));
    return v;
  }, "Names of every variant of the normalisation family (supported by this CPU or not).");

  nb::class_<AttentionOp, Op>(m, "AttentionOp")
      .def("__init__", [](AttentionOp* self, std::vector<int> dims, std::vector<int64_t> strides, float scale,
                          bool has_mask, const std::string& isa) {
        // dims: B, H, Sq, Sk, D, Dv; strides: (batch, head, row) of q, k, v, out, mask.
        if (dims.size() != 6 || strides.size() != 15)
          throw std::invalid_argument("AttentionOp: dims needs 6 values (B, H, Sq, Sk, D, Dv), strides 15 "
                                      "((batch, head, row) of q, k, v, out, mask)");
        const Isa i = parse_isa(isa);
        if (int(i) > int(best_isa())) throw std::invalid_argument("AttentionOp: ISA " + isa + " is not supported by this CPU");
        AttentionParams p;
        p.B = dims[0]; p.H = dims[1]; p.Sq = dims[2]; p.Sk = dims[3]; p.D = dims[4]; p.Dv = dims[5];
        int64_t* dst[15] = {&p.q_batch, &p.q_head, &p.q_row, &p.k_batch, &p.k_head, &p.k_row, &p.v_batch, &p.v_head,
                            &p.v_row, &p.o_batch, &p.o_head, &p.o_row, &p.m_batch, &p.m_head, &p.m_row};
        for (int k = 0; k < 15; ++k) *dst[k] = strides[size_t(k)];
        p.scale = scale;
        new (self) AttentionOp(p, has_mask, i);
      }, nb::arg("dims"), nb::arg("strides"), nb::arg("scale"), nb::arg("has_mask"), nb::arg("isa"),
      "out = softmax(q k^T * scale + mask) v for every (batch, head); operands addressed by strides.");
  m.def("softmax_variants", [] {
    std::vector<std::string> v;
    for (Isa isa : kSoftmaxVariants) v.emplace_back(isa_name(isa));
    return v;
  }, "Names of every variant of the row-softmax family (supported by this CPU or not).");

  nb::class_<ReorderOp, Op>(m, "ReorderOp")
      .def(nb::init<int, int, int, int, bool>(), nb::arg("n"), nb::arg("c"), nb::arg("hw"), nb::arg("block"),
           nb::arg("to_blocked"));

  nb::class_<PoolOp, Op>(m, "PoolOp")
      .def("__init__",
           [](PoolOp* self, const std::string& kind, std::vector<int> in_shape, std::vector<int> kernel,
              std::vector<int> strides, std::vector<int> pads, std::vector<int> dil, bool count_include_pad,
              std::vector<int> out_hw, int block, const std::string& isa) {
             if (kind != "max" && kind != "avg") throw std::invalid_argument("PoolOp: kind is max or avg");
             PoolParams p;
             p.N = at(in_shape, 0, "input_shape"); p.C = at(in_shape, 1, "input_shape");
             p.H = at(in_shape, 2, "input_shape"); p.W = at(in_shape, 3, "input_shape");
             p.R = at(kernel, 0, "kernel"); p.S = at(kernel, 1, "kernel");
             p.stride_h = at(strides, 0, "strides"); p.stride_w = at(strides, 1, "strides");
             p.pad_top = at(pads, 0, "pads"); p.pad_left = at(pads, 1, "pads");
             p.pad_bottom = at(pads, 2, "pads"); p.pad_right = at(pads, 3, "pads");
             p.dil_h = at(dil, 0, "dilations"); p.dil_w = at(dil, 1, "dilations");
             p.count_include_pad = count_include_pad;
             p.OH = at(out_hw, 0, "output_hw"); p.OW = at(out_hw, 1, "output_hw");
             new (self) PoolOp(p, kind == "max" ? PoolKind::kMax : PoolKind::kAvg, block, parse_isa(isa));
           },
           nb::arg("kind"), nb::arg("input_shape"), nb::arg("kernel"), nb::arg("strides"), nb::arg("pads"),
           nb::arg("dilations"), nb::arg("count_include_pad"), nb::arg("output_hw"), nb::arg("block"), nb::arg("isa"));

  nb::class_<GlobalAvgPoolOp, Op>(m, "GlobalAvgPoolOp")
      .def("__init__", [](GlobalAvgPoolOp* self, int n, int c, int hw, int block, const std::string& isa) {
        new (self) GlobalAvgPoolOp(n, c, hw, block, parse_isa(isa));
      }, nb::arg("n"), nb::arg("c"), nb::arg("hw"), nb::arg("block"), nb::arg("isa"));

  nb::class_<SparseConvOp, Op> sparse_conv(m, "SparseConvOp");
  sparse_op_members(sparse_conv)
      .def("__init__",
           [](SparseConvOp* self, CArray w, std::optional<CArray> bias, std::vector<int> strides, std::vector<int> pads,
              std::vector<int> dil, std::vector<int> in_shape, const std::string& act, float alpha, float beta,
              const std::string& isa, bool has_residual, bool batch_major, bool generated) {
             const ConvParams p = conv_params("SparseConvOp", w, bias, strides, pads, dil, 1, in_shape);
             new (self) SparseConvOp(p, w.data(), bias ? bias->data() : nullptr, activation_from_name(act), alpha,
                                     beta, parse_isa(isa), has_residual, batch_major, generated);
           },
           nb::arg("weight"), nb::arg("bias").none(), nb::arg("strides"), nb::arg("pads"), nb::arg("dilations"),
           nb::arg("input_shape"), nb::arg("activation"), nb::arg("alpha"), nb::arg("beta"), nb::arg("isa"),
           nb::arg("has_residual"), nb::arg("batch_major") = false, nb::arg("generated") = false)
      .def_prop_ro("workspace_floats", &SparseConvOp::workspace_floats);

  nb::class_<SparseLinearOp, Op> sparse_linear(m, "SparseLinearOp",
                                               "y[T, N] = act(x[T, K] @ W[K, N] + bias + residual) with W "
                                               "compressed (spmm over x transposed to [K, T]); workspace_floats "
                                               "of scratch. x_feature_major / y_feature_major: x given as [K, T] "
                                               "/ y (and the residual) as [N, T]. generated: by code generated "
                                               "for W (avx512).");
  sparse_op_members(sparse_linear)
      .def("__init__",
           [](SparseLinearOp* self, int64_t T, CArray w, std::optional<CArray> bias, const std::string& act,
              float alpha, float beta, const std::string& isa, bool has_residual, bool x_feature_major,
              bool y_feature_major, bool generated) {
             if (w.ndim() != 2)
               throw std::invalid_argument("SparseLinearOp: weight must be 2-D [K, N], got " +
                                           std::to_string(w.ndim()) + "-D");
             const int K = int(w.shape(0)), N = int(w.shape(1));
             if (bias && bias->size() != size_t(N))
               throw std::invalid_argument("SparseLinearOp: bias needs N=" + std::to_string(N) + " values, got " +
                                           std::to_string(bias->size()));
             new (self) SparseLinearOp(T, w.data(), K, N, bias ? bias->data() : nullptr, activation_from_name(act),
                                       alpha, beta, parse_isa(isa), has_residual, x_feature_major, y_feature_major,
                                       generated);
           },
           nb::arg("tokens"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("activation"), nb::arg("alpha"),
           nb::arg("beta"), nb::arg("isa"), nb::arg("has_residual"), nb::arg("x_feature_major") = false,
           nb::arg("y_feature_major") = false, nb::arg("generated") = false)
      .def_prop_ro("workspace_floats", &SparseLinearOp::workspace_floats);
}

}  // namespace si
