// Python surface of the Plan and its generic ops. The compiler (Python) builds plans; the
// engine calls Plan.run once per inference, which drops the GIL for the whole op loop.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>

#include "bindings/bindings.h"
#include "ops/basic_ops.h"
#include "runtime/cpu_features.h"
#include "runtime/dtype.h"
#include "runtime/plan.h"

namespace nb = nanobind;

namespace si {
namespace {

// Plan inputs and constants may be float32, int64, int32 or bool arrays (slots hold raw bytes).
using InArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
using OutArray = nb::ndarray<nb::numpy>;
using DestArray = nb::ndarray<nb::c_contig, nb::device::cpu>;  // writable (no nb::ro)

BinaryKind parse_binary(const std::string& name) {
  if (name == "add") return BinaryKind::kAdd;
  if (name == "sub") return BinaryKind::kSub;
  if (name == "mul") return BinaryKind::kMul;
  if (name == "div") return BinaryKind::kDiv;
  if (name == "pow") return BinaryKind::kPow;
  if (name == "max") return BinaryKind::kMax;
  if (name == "min") return BinaryKind::kMin;
  throw std::invalid_argument("unknown binary op '" + name + "'");
}

CompareKind parse_compare(const std::string& name) {
  if (name == "equal") return CompareKind::kEqual;
  if (name == "less") return CompareKind::kLess;
  if (name == "greater") return CompareKind::kGreater;
  if (name == "less_or_equal") return CompareKind::kLessOrEqual;
  if (name == "greater_or_equal") return CompareKind::kGreaterOrEqual;
  if (name == "not_equal") return CompareKind::kNotEqual;
  if (name == "and") return CompareKind::kAnd;
  if (name == "or") return CompareKind::kOr;
  if (name == "xor") return CompareKind::kXor;
  throw std::invalid_argument("unknown comparison '" + name +
                              "' (expected equal, less, greater, less_or_equal, greater_or_equal, not_equal, "
                              "and, or, xor)");
}

ReduceKind parse_reduce(const std::string& name) {
  if (name == "sum") return ReduceKind::kSum;
  if (name == "mean") return ReduceKind::kMean;
  if (name == "l2") return ReduceKind::kL2;
  throw std::invalid_argument("unknown reduction '" + name + "' (expected sum, mean, l2)");
}

nb::dlpack::dtype to_dlpack(DType t) {
  switch (t) {
    case DType::kF32: return nb::dtype<float>();
    case DType::kI64: return nb::dtype<int64_t>();
    case DType::kI32: return nb::dtype<int32_t>();
    case DType::kBool: return nb::dtype<bool>();
  }
  return nb::dtype<float>();
}

size_t num_elements(const std::vector<size_t>& shape) {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  return n;
}

// A Plan plus the shapes and element types of its inputs and outputs.
struct PyPlan {
  Plan plan;
  std::vector<std::vector<size_t>> input_shapes, output_shapes;
  std::vector<DType> input_dtypes, output_dtypes;
  PyPlan(int threads, bool pin) : plan(threads, pin) {}
  PyPlan(const PyPlan& o, int threads, bool pin)
      : plan(o.plan, threads, pin),
        input_shapes(o.input_shapes),
        output_shapes(o.output_shapes),
        input_dtypes(o.input_dtypes),
        output_dtypes(o.output_dtypes) {}
};

// Runs the plan on `inputs`; its outputs go into new arrays or, given `outputs`, into those
// (C-contiguous, of the outputs' dtypes and element counts: a caller gathering results, such as
// a stream filling a micro-batch, then copies nothing), which are returned.
nb::list run_plan(PyPlan& self, const std::vector<InArray>& inputs, const std::optional<std::vector<nb::object>>& outputs) {
  Plan& plan = self.plan;
  if (inputs.size() != plan.num_inputs())
    throw std::invalid_argument("plan expects " + std::to_string(plan.num_inputs()) + " inputs, got " +
                                std::to_string(inputs.size()));
  std::vector<const float*> in_ptrs(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DType t = self.input_dtypes[i];
    if (inputs[i].dtype() != to_dlpack(t))
      throw std::invalid_argument("plan input " + std::to_string(i) + " must have dtype " + dtype_name(t));
    if (inputs[i].size() != num_elements(self.input_shapes[i]))
      throw std::invalid_argument("plan input " + std::to_string(i) + " must have " +
                                  std::to_string(num_elements(self.input_shapes[i])) + " elements, got " +
                                  std::to_string(inputs[i].size()));
    in_ptrs[i] = static_cast<const float*>(inputs[i].data());
  }
  std::vector<float*> out_ptrs(plan.num_outputs());
  nb::list result;
  if (outputs) {
    if (outputs->size() != out_ptrs.size())
      throw std::invalid_argument("plan has " + std::to_string(out_ptrs.size()) + " outputs, got " +
                                  std::to_string(outputs->size()) + " arrays to write them into");
    for (size_t i = 0; i < out_ptrs.size(); ++i) {
      DestArray o;
      if (!nb::try_cast((*outputs)[i], o, /*convert=*/false) || o.dtype() != to_dlpack(self.output_dtypes[i]))
        throw std::invalid_argument("plan output " + std::to_string(i) + " must go into a writable C-contiguous " +
                                    dtype_name(self.output_dtypes[i]) + " array");
      if (o.size() != num_elements(self.output_shapes[i]))
        throw std::invalid_argument("plan output " + std::to_string(i) + " has " +
                                    std::to_string(num_elements(self.output_shapes[i])) + " elements, its array " +
                                    std::to_string(o.size()));
      out_ptrs[i] = static_cast<float*>(o.data());
      result.append((*outputs)[i]);
    }
  } else {
    for (size_t i = 0; i < out_ptrs.size(); ++i) {
      const std::vector<size_t>& shape = self.output_shapes.at(i);
      const DType t = self.output_dtypes.at(i);
      float* buf = new float[std::max<size_t>(1, dtype_words(t, num_elements(shape)))];
      nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
      out_ptrs[i] = buf;
      result.append(OutArray(buf, shape.size(), shape.data(), owner, nullptr, to_dlpack(t)));
    }
  }
  {
    nb::gil_scoped_release release;
    plan.run(in_ptrs.data(), out_ptrs.data());
  }
  return result;
}

}  // namespace

Activation activation_from_name(const std::string& name) {
  static const std::map<std::string, Activation> names = {
      {"none", Activation::kNone},         {"relu", Activation::kRelu},
      {"clip", Activation::kClip},         {"sigmoid", Activation::kSigmoid},
      {"hard_sigmoid", Activation::kHardSigmoid}, {"hardsigmoid", Activation::kHardSigmoid},
      {"hard_swish", Activation::kHardSwish},     {"hardswish", Activation::kHardSwish},
      {"silu", Activation::kSilu},         {"tanh", Activation::kTanh},
      {"gelu", Activation::kGelu},         {"gelu_tanh", Activation::kGeluTanh},
      {"erf", Activation::kErf},           {"sqrt", Activation::kSqrt}};
  auto it = names.find(name);
  if (it == names.end())
    throw std::invalid_argument("unknown activation '" + name + "' (expected none, relu, clip, sigmoid, "
                                "hard_sigmoid, hard_swish, silu, tanh, gelu, gelu_tanh, erf, sqrt)");
  return it->second;
}

void bind_plan(nb::module_& m) {
  nb::class_<Op>(m, "Op")
      .def_prop_ro("kernel_name", [](const Op& op) { return std::string(op.kernel_name()); })
      .def_prop_ro("weight_bytes", &Op::weight_bytes);

  nb::class_<PyPlan>(m, "Plan")
      .def(nb::init<int, bool>(), nb::arg("num_threads"), nb::arg("pin_threads") = false)
      .def("share_ops", [](const PyPlan& p, int threads, bool pin) { return new PyPlan(p, threads, pin); },
           nb::arg("num_threads"), nb::arg("pin_threads") = false, nb::rv_policy::take_ownership,
           "A plan running the same ops (weights held once) on its own arena and thread pool.")
      .def("add_input_slot", [](PyPlan& p, std::vector<size_t> shape, const std::string& dtype) {
        const DType t = parse_dtype(dtype);
        p.input_shapes.push_back(shape);
        p.input_dtypes.push_back(t);
        return p.plan.add_input_slot(dtype_words(t, num_elements(shape)));
      }, nb::arg("shape"), nb::arg("dtype") = "float32")
      .def("add_output_slot", [](PyPlan& p, std::vector<size_t> shape, const std::string& dtype) {
        const DType t = parse_dtype(dtype);
        p.output_shapes.push_back(shape);
        p.output_dtypes.push_back(t);
        return p.plan.add_output_slot(dtype_words(t, num_elements(shape)));
      }, nb::arg("shape"), nb::arg("dtype") = "float32")
      .def("add_arena_slot", [](PyPlan& p, size_t off, size_t n) { return p.plan.add_arena_slot(off, n); })
      .def("add_constant_slot", [](PyPlan& p, InArray a) {
        // Raw bytes, padded to whole words: constants of any supported dtype.
        const size_t bytes = a.nbytes();
        std::vector<float> words((bytes + 3) / 4, 0.f);
        if (bytes) std::memcpy(words.data(), a.data(), bytes);
        return p.plan.add_constant_slot(std::move(words));
      })
      .def("set_arena_size", [](PyPlan& p, size_t n) { p.plan.set_arena_size(n); })
      .def("add_op", [](PyPlan& p, std::shared_ptr<Op> op, std::vector<int> in, std::vector<int> out) {
        p.plan.add_op(std::move(op), std::move(in), std::move(out));
      })
      .def("run", &run_plan, nb::arg("inputs"), nb::arg("outputs") = nb::none())
      .def("run_timed", [](PyPlan& p) {
        nb::gil_scoped_release release;
        return p.plan.run_timed();
      })
      .def("run_single", [](PyPlan& p, size_t i) {
        nb::gil_scoped_release release;
        p.plan.run_single(i);
      })
      .def_prop_ro("num_ops", [](PyPlan& p) { return p.plan.num_ops(); })
      .def_prop_ro("num_threads", [](PyPlan& p) { return p.plan.pool().num_threads(); })
      .def_prop_ro("arena_bytes", [](PyPlan& p) { return p.plan.arena_bytes(); })
      .def_prop_ro("weight_bytes", [](PyPlan& p) { return p.plan.weight_bytes(); });

  nb::class_<BinaryOp, Op>(m, "BinaryOp")
      .def("__init__", [](BinaryOp* self, const std::string& kind, std::vector<int64_t> a, std::vector<int64_t> b,
                          std::vector<int64_t> out, const std::string& act, float alpha, float beta) {
        new (self) BinaryOp(parse_binary(kind), a, b, out, activation_from_name(act), alpha, beta);
      }, nb::arg("kind"), nb::arg("a_shape"), nb::arg("b_shape"), nb::arg("out_shape"),
         nb::arg("activation") = "none", nb::arg("alpha") = 0.f, nb::arg("beta") = 0.f);
  nb::class_<UnaryOp, Op>(m, "UnaryOp")
      .def("__init__", [](UnaryOp* self, size_t n, const std::string& act, float alpha, float beta) {
        new (self) UnaryOp(n, activation_from_name(act), alpha, beta);
      }, nb::arg("size"), nb::arg("activation"), nb::arg("alpha") = 0.f, nb::arg("beta") = 0.f);
  nb::class_<SoftmaxOp, Op>(m, "SoftmaxOp")
      .def("__init__", [](SoftmaxOp* self, int64_t outer, int64_t axis, int64_t inner, bool log,
                          const std::optional<std::string>& isa) {
        const Isa i = isa ? parse_isa(*isa) : active_isa();
        if (int(i) > int(best_isa())) throw std::invalid_argument("SoftmaxOp: ISA " + *isa + " is not supported by this CPU");
        new (self) SoftmaxOp(outer, axis, inner, log, i);
      }, nb::arg("outer"), nb::arg("axis"), nb::arg("inner"), nb::arg("log") = false, nb::arg("isa") = nb::none());
  nb::class_<TransposeOp, Op>(m, "TransposeOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>>(), nb::arg("shape"), nb::arg("perm"));
  nb::class_<ConcatOp, Op>(m, "ConcatOp")
      .def(nb::init<int64_t, std::vector<int64_t>>(), nb::arg("outer"), nb::arg("inners"));
  nb::class_<ReduceOp, Op>(m, "ReduceOp")
      .def("__init__", [](ReduceOp* self, std::vector<int64_t> shape, std::vector<bool> axes, const std::string& kind) {
        new (self) ReduceOp(std::move(shape), std::move(axes), parse_reduce(kind));
      }, nb::arg("shape"), nb::arg("axes"), nb::arg("kind"));
  nb::class_<PadOp, Op>(m, "PadOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>, float>(), nb::arg("shape"), nb::arg("pads"),
           nb::arg("value"));
  nb::class_<CopyOp, Op>(m, "CopyOp").def(nb::init<size_t>(), nb::arg("size"));

  // Ops on typed tensors (dtype names as in add_input_slot; elem_size in bytes).
  nb::class_<CastOp, Op>(m, "CastOp")
      .def("__init__", [](CastOp* self, size_t n, const std::string& from, const std::string& to) {
        new (self) CastOp(n, parse_dtype(from), parse_dtype(to));
      }, nb::arg("size"), nb::arg("from_dtype"), nb::arg("to_dtype"));
  nb::class_<CompareOp, Op>(m, "CompareOp")
      .def("__init__", [](CompareOp* self, const std::string& kind, const std::string& dtype, std::vector<int64_t> a,
                          std::vector<int64_t> b, std::vector<int64_t> out) {
        new (self) CompareOp(parse_compare(kind), parse_dtype(dtype), std::move(a), std::move(b), std::move(out));
      }, nb::arg("kind"), nb::arg("dtype"), nb::arg("a_shape"), nb::arg("b_shape"), nb::arg("out_shape"));
  nb::class_<WhereOp, Op>(m, "WhereOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>, std::vector<int64_t>, std::vector<int64_t>, size_t>(),
           nb::arg("cond_shape"), nb::arg("x_shape"), nb::arg("y_shape"), nb::arg("out_shape"), nb::arg("elem_size"));
  nb::class_<ExpandOp, Op>(m, "ExpandOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>, size_t>(), nb::arg("x_shape"), nb::arg("out_shape"),
           nb::arg("elem_size"));
  nb::class_<GatherOp, Op>(m, "GatherOp")
      .def(nb::init<int64_t, int64_t, int64_t, size_t, int64_t, bool>(), nb::arg("outer"), nb::arg("axis_dim"),
           nb::arg("inner"), nb::arg("elem_size"), nb::arg("num_indices"), nb::arg("indices_int32") = false);
  nb::class_<SliceOp, Op>(m, "SliceOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>, std::vector<int64_t>, std::vector<int64_t>, size_t>(),
           nb::arg("shape"), nb::arg("starts"), nb::arg("steps"), nb::arg("out_shape"), nb::arg("elem_size"));
  nb::class_<SplitOp, Op>(m, "SplitOp")
      .def(nb::init<int64_t, std::vector<int64_t>, int64_t, size_t>(), nb::arg("outer"), nb::arg("widths"),
           nb::arg("inner"), nb::arg("elem_size"));
}

}  // namespace si
