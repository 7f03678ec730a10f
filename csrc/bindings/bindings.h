// Each kernel family / runtime part registers its Python-facing functions in its own file.
#pragma once
#include <nanobind/nanobind.h>

#include <string>

#include "kernels/epilogue.h"

namespace si {
// Activation names as the compiler writes them ("relu", "clip", ...); throws on unknown.
Activation activation_from_name(const std::string& name);

void bind_runtime(nanobind::module_& m);
void bind_plan(nanobind::module_& m);
void bind_gemm(nanobind::module_& m);
void bind_conv(nanobind::module_& m);
void bind_kernel_ops(nanobind::module_& m);
void bind_spmm(nanobind::module_& m);
}  // namespace si
