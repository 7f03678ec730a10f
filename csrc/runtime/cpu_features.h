// Run-time CPU feature detection and the one ISA choice every kernel family dispatches on.
#pragma once
#include <string>

namespace si {

enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx_vnni = false;
};

// What the CPU (and OS, via XCR0) supports.
const CpuFeatures& cpu_features();

// Best ISA the machine supports.
Isa best_isa();

// ISA kernels should use now: best_isa(), lowered by the SPARSEINFER_ISA environment variable
// (read once) or by set_active_isa(). Asking for more than the machine has is an error.
Isa active_isa();
void set_active_isa(Isa isa);  // throws std::invalid_argument if unsupported here

const char* isa_name(Isa isa);
Isa parse_isa(const std::string& name);  // throws std::invalid_argument

}  // namespace si
