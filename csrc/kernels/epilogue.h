// What a producing kernel (conv, gemm, spmm) applies to each output before storing it:
// out = act(acc + bias[channel] + residual[same position]). Fusing this into the microkernel
// saves one full pass over the activations per fused op.
#pragma once
#include <algorithm>
#include <cmath>

namespace si {

enum class Activation : int {
  kNone = 0,
  kRelu = 1,
  kClip = 2,         // min(max(x, alpha), beta): Relu6 is Clip(0, 6)
  kSigmoid = 3,
  kHardSigmoid = 4,  // max(0, min(1, alpha * x + beta))
  kHardSwish = 5,    // x * max(0, min(1, x / 6 + 0.5))
  kSilu = 6,         // x * sigmoid(x)
  kTanh = 7,
  kGelu = 8,         // x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  kGeluTanh = 9,     // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  kErf = 10,         // plain element-wise functions: not fused after a producer by the compiler
  kSqrt = 11,        // today, but any kernel epilogue can apply them
};

struct Epilogue {
  const float* bias = nullptr;      // one value per output channel, or nullptr
  const float* residual = nullptr;  // same layout and shape as the output, or nullptr
  Activation act = Activation::kNone;
  float alpha = 0.f, beta = 0.f;    // Clip bounds or HardSigmoid coefficients
};

// Scalar reference of the activation; ISA variants must match it within float rounding.
inline float apply_activation(float x, Activation act, float alpha, float beta) {
  switch (act) {
    case Activation::kNone: return x;
    case Activation::kRelu: return x > 0.f ? x : 0.f;
    case Activation::kClip: return std::min(std::max(x, alpha), beta);
    case Activation::kSigmoid: return 1.f / (1.f + std::exp(-x));
    case Activation::kHardSigmoid: return std::max(0.f, std::min(1.f, alpha * x + beta));
    case Activation::kHardSwish: return x * std::max(0.f, std::min(1.f, x * (1.f / 6.f) + 0.5f));
    case Activation::kSilu: return x / (1.f + std::exp(-x));
    case Activation::kTanh: return std::tanh(x);
    case Activation::kGelu: return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
    case Activation::kGeluTanh:
      return 0.5f * x * (1.f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Activation::kErf: return std::erf(x);
    case Activation::kSqrt: return std::sqrt(x);
  }
  return x;
}

}  // namespace si
