"""`sparseinfer check-hardware`: CPU model, ISA features, cores, caches, and the kernels the
engine will use on this machine."""

from __future__ import annotations

import argparse
import glob
import json
import os


def caches() -> list[dict]:
    """CPU 0's caches from /sys (level, type, size, shared by how many logical CPUs)."""
    out = []
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        def read(name: str) -> str:
            try:
                with open(os.path.join(d, name)) as f:
                    return f.read().strip()
            except OSError:
                return ""
        shared = read("shared_cpu_list")
        n = 0
        for part in shared.split(","):
            if "-" in part:
                a, b = part.split("-")
                n += int(b) - int(a) + 1
            elif part:
                n += 1
        out.append({"level": read("level"), "type": read("type"), "size": read("size"),
                    "line_bytes": read("coherency_line_size"), "shared_by_cpus": n})
    return out


def hardware_report() -> dict:
    """Everything check-hardware prints, as a dict."""
    from sparseinfer import _core
    from sparseinfer.benchmark.command import cpu_model_name

    isa = _core.active_isa()
    rep = {"cpu": cpu_model_name(), "logical_cpus": os.cpu_count(),
           "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "physical_cores": _core.physical_core_count(), "features": dict(_core.cpu_features()),
           "best_isa": _core.best_isa(), "active_isa": isa,
           "forced_isa": os.environ.get("SPARSEINFER_ISA"), "caches": caches()}
    kernels = {}
    if hasattr(_core, "nchwc_block"):
        kernels["conv layout"] = f"NCHW{_core.nchwc_block(isa)}c"
    if hasattr(_core, "gemm_tile"):
        kernels["gemm tile (MR x NR)"] = str(_core.gemm_tile(isa))
    if hasattr(_core, "gemm_variants"):
        kernels["gemm variants built"] = ", ".join(map(str, _core.gemm_variants()))
    kernels["int8 dot product"] = ("AVX-512 VNNI" if rep["features"].get("avx512vnni")
                                   else "AVX-VNNI" if rep["features"].get("avx_vnni") else "none (no VNNI)")
    kernels["bf16"] = "AVX-512 BF16" if rep["features"].get("avx512bf16") else "none"
    rep["kernels"] = kernels
    return rep


def configure(p: argparse.ArgumentParser):
    """Adds the ``check-hardware`` arguments; returns the handler."""
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return run


def run(args: argparse.Namespace) -> int:
    rep = hardware_report()
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"cpu:             {rep['cpu']}")
    print(f"cores:           {rep['physical_cores']} physical, {rep['usable_cpus']} usable logical "
          f"of {rep['logical_cpus']}")
    print("features:        " + " ".join(k for k, v in rep["features"].items() if v)
          + "   (missing: " + (" ".join(k for k, v in rep["features"].items() if not v) or "none") + ")")
    print(f"ISA:             active {rep['active_isa']}, best {rep['best_isa']}"
          + (f" (forced by SPARSEINFER_ISA={rep['forced_isa']})" if rep["forced_isa"] else ""))
    for c in rep["caches"]:
        print(f"cache L{c['level']} {c['type']:<12} {c['size']:>8}, {c['line_bytes']}-byte lines, "
              f"shared by {c['shared_by_cpus']} CPUs")
    for k, v in rep["kernels"].items():
        print(f"{k + ':':<22} {v}")
    return 0
