// Element types a Plan slot may hold. Slots are sized in 4-byte words; a value of another
// type is stored as its raw bytes (an int64 tensor of n elements takes 2n words, a bool
// tensor ceil(n / 4) words), and the ops that read it know its type from construction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace si {

enum class DType : int { kF32 = 0, kI64 = 1, kI32 = 2, kBool = 3 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kI64: return 8;
    case DType::kI32: return 4;
    case DType::kBool: return 1;
  }
  return 4;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kI64: return "int64";
    case DType::kI32: return "int32";
    case DType::kBool: return "bool";
  }
  return "?";
}

inline DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::kF32;
  if (name == "int64") return DType::kI64;
  if (name == "int32") return DType::kI32;
  if (name == "bool") return DType::kBool;
  throw std::invalid_argument("unsupported element type '" + name + "' (expected float32, int64, int32 or bool)");
}

// 4-byte words holding n elements of type t.
inline size_t dtype_words(DType t, size_t n) { return (n * dtype_size(t) + 3) / 4; }

}  // namespace si
