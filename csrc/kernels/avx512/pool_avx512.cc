// avx512 instantiation of the NCHWc pooling kernels (pool_impl.h, vectorised by the compiler).
#include <cstddef>
#include <vector>

#include "kernels/pool.h"

namespace si::avx512 {
#include "kernels/pool_impl.h"
}  // namespace si::avx512
