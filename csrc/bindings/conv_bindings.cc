// Python bindings of the NCHWc conv / pool / reorder family. Arrays are float32 C-contiguous;
// anything else is a ValueError. The GIL is released while kernels run.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/conv.h"
#include "kernels/pool.h"
#include "kernels/reorder.h"

namespace nb = nanobind;

namespace si {
namespace {

using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;
using OutArray = nb::ndarray<nb::numpy, float>;

std::string shape_str(const std::vector<size_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

struct F32 {
  const float* data;
  std::vector<size_t> shape;
};

// Accepts a float32 C-contiguous CPU array, else a ValueError naming `what`.
F32 as_f32(nb::handle h, const char* what) {
  AnyArray a;
  if (!nb::try_cast(h, a)) throw std::invalid_argument(std::string(what) + ": expected a numpy float32 array");
  if (a.dtype() != nb::dtype<float>())
    throw std::invalid_argument(std::string(what) + ": expected dtype float32");
  F32 r{static_cast<const float*>(a.data()), {}};
  for (size_t i = 0; i < a.ndim(); ++i) r.shape.push_back(a.shape(i));
  int64_t expect = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) > 1 && a.stride(i) != expect)
      throw std::invalid_argument(std::string(what) + ": expected a C-contiguous array");
    expect *= int64_t(a.shape(i));
  }
  return r;
}

void expect_shape(const F32& a, const std::vector<size_t>& want, const char* what) {
  if (a.shape != want)
    throw std::invalid_argument(std::string(what) + ": expected shape " + shape_str(want) + ", got " +
                                shape_str(a.shape));
}

OutArray new_array(const std::vector<size_t>& shape, float** data) {
  size_t n = 1;
  for (size_t s : shape) n *= s;
  float* p = new float[n > 0 ? n : 1];
  nb::capsule owner(p, [](void* q) noexcept { delete[] static_cast<float*>(q); });
  *data = p;
  return OutArray(p, shape.size(), shape.data(), owner);
}

Isa supported_isa(const std::string& name) {
  const Isa isa = parse_isa(name);
  if (int(isa) > int(best_isa()))
    throw std::invalid_argument("ISA '" + name + "' is not supported by this CPU (best: " + isa_name(best_isa()) + ")");
  return isa;
}

// One pool per thread count, shared by all calls (nullptr for one thread).
ThreadPool* pool_for(int num_threads) {
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  if (num_threads == 1) return nullptr;
  static std::mutex mu;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(mu);
  auto& p = pools[num_threads];
  if (!p) p = std::make_unique<ThreadPool>(num_threads);
  return p.get();
}

std::vector<int> ints(const std::vector<int>& v, size_t n, const char* what) {
  if (v.size() != n) throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(n) + " values");
  return v;
}

size_t cdiv(size_t a, size_t b) { return (a + b - 1) / b; }

struct PyConv {
  std::unique_ptr<ConvNchwc> conv;
  ConvParams p;
  int B;

  PyConv(nb::handle weight, nb::handle bias, std::vector<int> stride, std::vector<int> pads,
         std::vector<int> dilations, int groups, std::vector<int> input_shape, const std::string& activation,
         float alpha, float beta, const std::string& isa_s) {
    const Isa isa = supported_isa(isa_s);
    const F32 w = as_f32(weight, "weight");
    if (w.shape.size() != 4) throw std::invalid_argument("weight: expected shape (K, C/groups, R, S)");
    ints(stride, 2, "stride");
    ints(pads, 4, "pads (top, left, bottom, right)");
    ints(dilations, 2, "dilations");
    ints(input_shape, 4, "input_shape (N, C, H, W)");
    p = ConvParams{input_shape[0], input_shape[1], input_shape[2], input_shape[3],
                   int(w.shape[0]), int(w.shape[2]), int(w.shape[3])};
    p.stride_h = stride[0];
    p.stride_w = stride[1];
    p.pad_top = pads[0];
    p.pad_left = pads[1];
    p.pad_bottom = pads[2];
    p.pad_right = pads[3];
    p.dil_h = dilations[0];
    p.dil_w = dilations[1];
    p.groups = groups;
    if (groups < 1 || p.C % groups || int(w.shape[1]) * groups != p.C)
      throw std::invalid_argument("weight: shape[1] * groups must equal the input channels " + std::to_string(p.C));
    const float* bp = nullptr;
    if (!bias.is_none()) {
      const F32 b = as_f32(bias, "bias");
      expect_shape(b, {size_t(p.K)}, "bias");
      bp = b.data;
    }
    conv = std::make_unique<ConvNchwc>(p, w.data, bp, activation_from_name(activation), alpha, beta, isa);
    B = conv->block();
  }

  std::vector<size_t> out_shape() const {
    return {size_t(p.N), cdiv(p.K, B), size_t(p.OH()), size_t(p.OW()), size_t(B)};
  }

  F32 checked_input(nb::handle x) const {
    const F32 in = as_f32(x, "x");
    if (conv->input_is_nchw()) {
      expect_shape(in, {size_t(p.N), size_t(p.C), size_t(p.H), size_t(p.W)}, "x (NCHW)");
    } else {
      expect_shape(in, {size_t(p.N), cdiv(p.C, B), size_t(p.H), size_t(p.W), size_t(B)}, "x (NCHWc)");
    }
    return in;
  }

  // Seconds per run, timed in a C++ loop into one preallocated output (as the engine's arena
  // does): no Python call or page faults of a fresh output in the timing. Benchmarks only.
  double time_runs(nb::handle x, int iters, int num_threads) const {
    const F32 in = checked_input(x);
    if (iters < 1) throw std::invalid_argument("iters must be >= 1");
    ThreadPool* tp = pool_for(num_threads);
    size_t n = 1;
    for (size_t s : out_shape()) n *= s;
    std::vector<float> out(n);
    nb::gil_scoped_release release;
    conv->run(in.data, out.data(), nullptr, tp);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) conv->run(in.data, out.data(), nullptr, tp);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
  }

  OutArray run(nb::handle x, nb::handle residual, int num_threads) const {
    const F32 in = checked_input(x);
    const float* rp = nullptr;
    if (!residual.is_none()) {
      const F32 r = as_f32(residual, "residual");
      expect_shape(r, out_shape(), "residual (NCHWc)");
      rp = r.data;
    }
    ThreadPool* tp = pool_for(num_threads);
    float* out;
    OutArray o = new_array(out_shape(), &out);
    {
      nb::gil_scoped_release release;
      conv->run(in.data, out, rp, tp);
    }
    return o;
  }
};

std::vector<int> pads_or_zero(const std::vector<int>& v) { return v.empty() ? std::vector<int>{0, 0, 0, 0} : v; }

}  // namespace

void bind_conv(nb::module_& m) {
  m.def("nchwc_block", [](const std::string& isa) { return nchwc_block(supported_isa(isa)); }, nb::arg("isa"),
        "Channel block of the NCHWc layout for an ISA (16 for avx512, 8 otherwise).");

  m.def(
      "reorder_to_nchwc",
      [](nb::handle x, const std::string& isa, int num_threads) {
        const F32 a = as_f32(x, "x");
        if (a.shape.size() < 2) throw std::invalid_argument("x: expected shape (N, C, ...)");
        const int B = nchwc_block(supported_isa(isa));
        size_t hw = 1;
        for (size_t i = 2; i < a.shape.size(); ++i) hw *= a.shape[i];
        std::vector<size_t> shape = {a.shape[0], cdiv(a.shape[1], B)};
        for (size_t i = 2; i < a.shape.size(); ++i) shape.push_back(a.shape[i]);
        shape.push_back(B);
        ThreadPool* tp = pool_for(num_threads);
        float* out;
        OutArray o = new_array(shape, &out);
        nb::gil_scoped_release release;
        reorder_nchw_to_nchwc(a.data, out, int(a.shape[0]), int(a.shape[1]), int(hw), B, tp);
        return o;
      },
      nb::arg("x"), nb::arg("isa"), nb::arg("num_threads") = 1, "NCHW (N, C, *spatial) -> NCHWc (N, Cb, *spatial, B).");

  m.def(
      "reorder_to_nchw",
      [](nb::handle x, int channels, const std::string& isa, int num_threads) {
        const F32 a = as_f32(x, "x");
        const int B = nchwc_block(supported_isa(isa));
        if (a.shape.size() < 3 || a.shape.back() != size_t(B) || channels < 1 ||
            a.shape[1] != cdiv(size_t(channels), B))
          throw std::invalid_argument("x: expected shape (N, ceil(channels/" + std::to_string(B) + "), ..., " +
                                      std::to_string(B) + "), got " + shape_str(a.shape));
        size_t hw = 1;
        std::vector<size_t> shape = {a.shape[0], size_t(channels)};
        for (size_t i = 2; i + 1 < a.shape.size(); ++i) hw *= a.shape[i], shape.push_back(a.shape[i]);
        ThreadPool* tp = pool_for(num_threads);
        float* out;
        OutArray o = new_array(shape, &out);
        nb::gil_scoped_release release;
        reorder_nchwc_to_nchw(a.data, out, int(a.shape[0]), channels, int(hw), B, tp);
        return o;
      },
      nb::arg("x"), nb::arg("channels"), nb::arg("isa"), nb::arg("num_threads") = 1,
      "NCHWc (N, Cb, *spatial, B) -> NCHW (N, channels, *spatial).");

  nb::class_<PyConv>(m, "ConvNchwc", "f32 convolution on NCHWc activations with packed weights.")
      .def(nb::init<nb::handle, nb::handle, std::vector<int>, std::vector<int>, std::vector<int>, int, std::vector<int>,
                    const std::string&, float, float, const std::string&>(),
           nb::arg("weight"), nb::arg("bias").none() = nb::none(), nb::arg("stride") = std::vector<int>{1, 1},
           nb::arg("pads") = std::vector<int>{0, 0, 0, 0}, nb::arg("dilations") = std::vector<int>{1, 1},
           nb::arg("groups") = 1, nb::arg("input_shape"), nb::arg("activation") = "none", nb::arg("alpha") = 0.f,
           nb::arg("beta") = 0.f, nb::arg("isa") = "avx512")
      .def("run", &PyConv::run, nb::arg("x"), nb::arg("residual").none() = nb::none(), nb::arg("num_threads") = 1)
      .def("_time_runs", &PyConv::time_runs, nb::arg("x"), nb::arg("iters"), nb::arg("num_threads") = 1,
           "Seconds per run in a C++ loop into a preallocated output: benchmarks only.")
      .def_prop_ro("kernel_name", [](const PyConv& c) { return std::string(c.conv->kernel_name()); })
      .def_prop_ro("weight_bytes", [](const PyConv& c) { return c.conv->weight_bytes(); })
      .def_prop_ro("input_is_nchw", [](const PyConv& c) { return c.conv->input_is_nchw(); })
      .def_prop_ro("block", [](const PyConv& c) { return c.B; })
      .def_prop_ro("output_shape", [](const PyConv& c) { return c.out_shape(); });

  m.def(
      "pool_nchwc",
      [](nb::handle x, const std::string& kind, std::vector<int> kernel_shape, std::vector<int> strides,
         std::vector<int> pads, std::vector<int> dilations, bool count_include_pad, bool ceil_mode, int channels,
         const std::string& isa_s, int num_threads) {
        const Isa isa = supported_isa(isa_s);
        const F32 a = as_f32(x, "x");
        // A 4-D array is plain NCHW (block 1: the layout sparse convs read and write).
        const int B = a.shape.size() == 4 ? 1 : nchwc_block(isa);
        if (B > 1 && (a.shape.size() != 5 || a.shape[4] != size_t(B)))
          throw std::invalid_argument("x: expected NCHW shape (N, C, H, W) or NCHWc shape (N, Cb, H, W, " +
                                      std::to_string(B) + "), got " + shape_str(a.shape));
        PoolKind k;
        if (kind == "max") k = PoolKind::kMax;
        else if (kind == "avg") k = PoolKind::kAvg;
        else throw std::invalid_argument("pool kind must be 'max' or 'avg', got '" + kind + "'");
        ints(kernel_shape, 2, "kernel_shape");
        ints(strides, 2, "strides");
        pads = pads_or_zero(pads);
        ints(pads, 4, "pads (top, left, bottom, right)");
        ints(dilations, 2, "dilations");
        const int C = channels > 0 ? channels : int(a.shape[1]) * B;
        if (cdiv(size_t(C), B) != a.shape[1]) throw std::invalid_argument("channels does not match x.shape[1]");
        PoolParams p{int(a.shape[0]), C, int(a.shape[2]), int(a.shape[3]), kernel_shape[0], kernel_shape[1]};
        p.stride_h = strides[0];
        p.stride_w = strides[1];
        p.pad_top = pads[0];
        p.pad_left = pads[1];
        p.pad_bottom = pads[2];
        p.pad_right = pads[3];
        p.dil_h = dilations[0];
        p.dil_w = dilations[1];
        p.count_include_pad = count_include_pad;
        if (p.R < 1 || p.S < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1)
          throw std::invalid_argument("pool: kernel, strides and dilations must be >= 1");
        p.OH = pool_output_size(p.H, p.R, p.stride_h, p.pad_top, p.pad_bottom, p.dil_h, ceil_mode);
        p.OW = pool_output_size(p.W, p.S, p.stride_w, p.pad_left, p.pad_right, p.dil_w, ceil_mode);
        if (p.OH < 1 || p.OW < 1) throw std::invalid_argument("pool: the window does not fit the padded input");
        ThreadPool* tp = pool_for(num_threads);
        float* out;
        std::vector<size_t> shape = {a.shape[0], a.shape[1], size_t(p.OH), size_t(p.OW)};
        if (B > 1) shape.push_back(size_t(B));
        OutArray o = new_array(shape, &out);
        nb::gil_scoped_release release;
        pool_nchwc(p, k, a.data, out, B, tp, isa);
        return o;
      },
      nb::arg("x"), nb::arg("kind"), nb::arg("kernel_shape"), nb::arg("strides") = std::vector<int>{1, 1},
      nb::arg("pads") = std::vector<int>{0, 0, 0, 0}, nb::arg("dilations") = std::vector<int>{1, 1},
      nb::arg("count_include_pad") = false, nb::arg("ceil_mode") = false, nb::arg("channels") = 0,
      nb::arg("isa") = "avx512", nb::arg("num_threads") = 1,
      "Max ('max') or average ('avg') pooling of an NCHWc array (N, Cb, H, W, B) -> (N, Cb, OH, OW, B), or of "
      "a plain NCHW array (N, C, H, W) -> (N, C, OH, OW).");

  m.def(
      "global_avg_pool_nchwc",
      [](nb::handle x, const std::string& isa_s, int num_threads) {
        const Isa isa = supported_isa(isa_s);
        const int B = nchwc_block(isa);
        const F32 a = as_f32(x, "x");
        if (a.shape.size() != 5 || a.shape[4] != size_t(B) || a.shape[2] * a.shape[3] == 0)
          throw std::invalid_argument("x: expected NCHWc shape (N, Cb, H, W, " + std::to_string(B) + "), got " +
                                      shape_str(a.shape));
        ThreadPool* tp = pool_for(num_threads);
        float* out;
        OutArray o = new_array({a.shape[0], a.shape[1], 1, 1, size_t(B)}, &out);
        nb::gil_scoped_release release;
        global_avg_pool_nchwc(a.data, out, int(a.shape[0]), int(a.shape[1]) * B, int(a.shape[2] * a.shape[3]), B, tp,
                              isa);
        return o;
      },
      nb::arg("x"), nb::arg("isa") = "avx512", nb::arg("num_threads") = 1,
      "Global average pooling of an NCHWc array (N, Cb, H, W, B) -> (N, Cb, 1, 1, B).");
}

}  // namespace si
