#include "runtime/cpu_features.h"

#include <cpuid.h>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

namespace si {
namespace {

uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_ok = (xcr0 & 0x6) == 0x6;
  const bool zmm_ok = (xcr0 & 0xe6) == 0xe6;
  if (!ymm_ok) return f;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.fma = fma;
  f.f16c = f16c;
  f.avx2 = (b & (1u << 5)) && fma;
  if (zmm_ok) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vnni = c & (1u << 11);
    unsigned a1, b1, c1, d1;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) {
      f.avx512bf16 = a1 & (1u << 5);
      f.avx_vnni = a1 & (1u << 4);
    }
  }
  return f;
}

Isa env_or_best() {
  Isa best = best_isa();
  const char* env = std::getenv("SPARSEINFER_ISA");
  if (!env || !*env) return best;
  Isa want = parse_isa(env);
  if (static_cast<int>(want) > static_cast<int>(best)) {
    throw std::invalid_argument(std::string("SPARSEINFER_ISA=") + env +
                                " is not supported by this CPU (best: " + isa_name(best) + ")");
  }
  return want;
}

Isa& active_slot() {
  static Isa isa = env_or_best();
  return isa;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa best_isa() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) return Isa::kAvx512;
  if (f.avx2 && f.fma) return Isa::kAvx2;
  return Isa::kPortable;
}

Isa active_isa() { return active_slot(); }

void set_active_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa())) {
    throw std::invalid_argument(std::string("ISA ") + isa_name(isa) +
                                " is not supported by this CPU (best: " + isa_name(best_isa()) + ")");
  }
  active_slot() = isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "portable";
  }
}

Isa parse_isa(const std::string& name) {
  if (name == "avx512") return Isa::kAvx512;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "portable" || name == "scalar") return Isa::kPortable;
  throw std::invalid_argument("unknown ISA '" + name + "' (expected avx512, avx2 or portable)");
}

}  // namespace si
