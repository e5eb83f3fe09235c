// Tensor shapes in error messages, written as "[2, 384, 8, 8, 8]".
#pragma once
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>

namespace msam {

inline std::string shape_str(c10::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace msam
