#include <nanobind/stl/string.h>

#include "bindings/bindings.h"
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace nb = nanobind;

namespace si {

void bind_runtime(nb::module_& m) {
  m.def("cpu_features", [] {
    const CpuFeatures& f = cpu_features();
    nb::dict d;
    d["avx2"] = f.avx2;
    d["fma"] = f.fma;
    d["f16c"] = f.f16c;
    d["avx512f"] = f.avx512f;
    d["avx512bw"] = f.avx512bw;
    d["avx512vl"] = f.avx512vl;
    d["avx512dq"] = f.avx512dq;
    d["avx512vnni"] = f.avx512vnni;
    d["avx512bf16"] = f.avx512bf16;
    d["avx_vnni"] = f.avx_vnni;
    return d;
  });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
        "Force kernels to one ISA (avx512, avx2, portable); errors if the CPU lacks it.");
  m.def("physical_core_count", &physical_core_count);
  m.def("cross_core_round_trip_ns",
        [](int round_trips) {
          nb::gil_scoped_release release;
          return cross_core_round_trip_ns(round_trips);
        },
        nb::arg("round_trips") = 20000,
        "Median ns for a cache line to go from the first CPU of the affinity mask to the second and "
        "back (-1 with fewer than two CPUs): the machine state a benchmark round ran in.");
}

}  // namespace si
