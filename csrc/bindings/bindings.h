// Each kernel family / runtime part registers its Python-facing functions in its own file.
#pragma once
#include <nanobind/nanobind.h>

namespace si {
void bind_runtime(nanobind::module_& m);
void bind_conv(nanobind::module_& m);
}  // namespace si
