#include "bindings/bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "sparseinfer native core (kernels, runtime); no knowledge of ONNX";
  si::bind_runtime(m);
  si::bind_conv(m);
}
