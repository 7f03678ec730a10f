#include "bindings/bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "sparseinfer native core (kernels, runtime); no knowledge of ONNX";
  si::bind_runtime(m);
  si::bind_plan(m);
  si::bind_gemm(m);
  si::bind_conv(m);
  si::bind_kernel_ops(m);
  si::bind_spmm(m);
}
