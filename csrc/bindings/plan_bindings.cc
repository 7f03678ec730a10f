// Python surface of the Plan and its generic ops. The compiler (Python) builds plans; the
// engine calls Plan.run once per inference, which drops the GIL for the whole op loop.
#include <nanobind/ndarray.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <stdexcept>

#include "bindings/bindings.h"
#include "ops/basic_ops.h"
#include "runtime/plan.h"

namespace nb = nanobind;

namespace si {
namespace {

using InArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using OutArray = nb::ndarray<nb::numpy, float>;

Activation parse_activation(const std::string& name) {
  if (name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kRelu;
  if (name == "clip") return Activation::kClip;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "hard_sigmoid") return Activation::kHardSigmoid;
  if (name == "hard_swish") return Activation::kHardSwish;
  if (name == "silu") return Activation::kSilu;
  if (name == "tanh") return Activation::kTanh;
  throw std::invalid_argument("unknown activation '" + name +
                              "' (expected none, relu, clip, sigmoid, hard_sigmoid, hard_swish, silu, tanh)");
}

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

// A Plan plus the output shapes Python wants back.
struct PyPlan {
  Plan plan;
  std::vector<std::vector<size_t>> output_shapes;
  PyPlan(int threads, bool pin) : plan(threads, pin) {}
};

std::vector<OutArray> run_plan(PyPlan& self, const std::vector<InArray>& inputs) {
  Plan& plan = self.plan;
  if (inputs.size() != plan.num_inputs())
    throw std::invalid_argument("plan expects " + std::to_string(plan.num_inputs()) + " inputs, got " +
                                std::to_string(inputs.size()));
  std::vector<const float*> in_ptrs(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) in_ptrs[i] = inputs[i].data();
  std::vector<float*> out_ptrs(plan.num_outputs());
  std::vector<OutArray> outs;
  outs.reserve(out_ptrs.size());
  for (size_t i = 0; i < out_ptrs.size(); ++i) {
    const std::vector<size_t>& shape = self.output_shapes.at(i);
    size_t n = 1;
    for (size_t d : shape) n *= d;
    float* buf = new float[n > 0 ? n : 1];
    nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    out_ptrs[i] = buf;
    outs.emplace_back(buf, shape.size(), shape.data(), owner);
  }
  {
    nb::gil_scoped_release release;
    plan.run(in_ptrs.data(), out_ptrs.data());
  }
  return outs;
}

}  // namespace

Activation activation_from_name(const std::string& name) { return parse_activation(name); }

void bind_plan(nb::module_& m) {
  nb::class_<Op>(m, "Op")
      .def_prop_ro("kernel_name", [](const Op& op) { return std::string(op.kernel_name()); })
      .def_prop_ro("weight_bytes", &Op::weight_bytes);

  nb::class_<PyPlan>(m, "Plan")
      .def(nb::init<int, bool>(), nb::arg("num_threads"), nb::arg("pin_threads") = false)
      .def("add_input_slot", [](PyPlan& p, size_t n) { return p.plan.add_input_slot(n); })
      .def("add_output_slot", [](PyPlan& p, std::vector<size_t> shape) {
        size_t n = 1;
        for (size_t d : shape) n *= d;
        p.output_shapes.push_back(shape);
        return p.plan.add_output_slot(n);
      })
      .def("add_arena_slot", [](PyPlan& p, size_t off, size_t n) { return p.plan.add_arena_slot(off, n); })
      .def("add_constant_slot", [](PyPlan& p, InArray a) {
        return p.plan.add_constant_slot(std::vector<float>(a.data(), a.data() + a.size()));
      })
      .def("set_arena_size", [](PyPlan& p, size_t n) { p.plan.set_arena_size(n); })
      .def("add_op", [](PyPlan& p, std::shared_ptr<Op> op, std::vector<int> in, std::vector<int> out) {
        p.plan.add_op(std::move(op), std::move(in), std::move(out));
      })
      .def("run", &run_plan)
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
        new (self) BinaryOp(parse_binary(kind), a, b, out, parse_activation(act), alpha, beta);
      }, nb::arg("kind"), nb::arg("a_shape"), nb::arg("b_shape"), nb::arg("out_shape"),
         nb::arg("activation") = "none", nb::arg("alpha") = 0.f, nb::arg("beta") = 0.f);
  nb::class_<UnaryOp, Op>(m, "UnaryOp")
      .def("__init__", [](UnaryOp* self, size_t n, const std::string& act, float alpha, float beta) {
        new (self) UnaryOp(n, parse_activation(act), alpha, beta);
      }, nb::arg("size"), nb::arg("activation"), nb::arg("alpha") = 0.f, nb::arg("beta") = 0.f);
  nb::class_<SoftmaxOp, Op>(m, "SoftmaxOp")
      .def(nb::init<int64_t, int64_t, int64_t, bool>(), nb::arg("outer"), nb::arg("axis"), nb::arg("inner"),
           nb::arg("log") = false);
  nb::class_<TransposeOp, Op>(m, "TransposeOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>>(), nb::arg("shape"), nb::arg("perm"));
  nb::class_<ConcatOp, Op>(m, "ConcatOp")
      .def(nb::init<int64_t, std::vector<int64_t>>(), nb::arg("outer"), nb::arg("inners"));
  nb::class_<ReduceOp, Op>(m, "ReduceOp")
      .def(nb::init<std::vector<int64_t>, std::vector<bool>, bool>(), nb::arg("shape"), nb::arg("axes"),
           nb::arg("mean"));
  nb::class_<PadOp, Op>(m, "PadOp")
      .def(nb::init<std::vector<int64_t>, std::vector<int64_t>, float>(), nb::arg("shape"), nb::arg("pads"),
           nb::arg("value"));
  nb::class_<CopyOp, Op>(m, "CopyOp").def(nb::init<size_t>(), nb::arg("size"));
}

}  // namespace si
