#include "msam/data/components.h"

#include <vector>

#include "msam/common/error.h"

namespace msam::data {

at::Tensor connected_to(const at::Tensor& mask, const std::vector<Index3>& seeds) {
  if (!mask.defined() || mask.dim() != 3) throw Error("connected_to: the mask must be 3-D");
  const auto in = mask.to(at::kCPU, at::kBool).contiguous();
  auto out = at::zeros_like(in);
  const int64_t X = in.size(0), Y = in.size(1), Z = in.size(2);
  const bool* m = in.data_ptr<bool>();
  bool* o = out.data_ptr<bool>();
  // Flat index i = (x·Y + y)·Z + z, the contiguous layout.
  std::vector<int64_t> stack;
  for (const auto& s : seeds) {
    if (s[0] < 0 || s[0] >= X || s[1] < 0 || s[1] >= Y || s[2] < 0 || s[2] >= Z) continue;
    const int64_t i = (s[0] * Y + s[1]) * Z + s[2];
    if (m[i] && !o[i]) {
      o[i] = true;
      stack.push_back(i);
    }
  }
  while (!stack.empty()) {
    const int64_t i = stack.back();
    stack.pop_back();
    const int64_t x = i / (Y * Z), y = (i / Z) % Y, z = i % Z;
    for (int64_t dx = -1; dx <= 1; ++dx) {
      const int64_t nx = x + dx;
      if (nx < 0 || nx >= X) continue;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        const int64_t ny = y + dy;
        if (ny < 0 || ny >= Y) continue;
        for (int64_t dz = -1; dz <= 1; ++dz) {
          const int64_t nz = z + dz;
          if (nz < 0 || nz >= Z) continue;
          const int64_t j = (nx * Y + ny) * Z + nz;
          if (m[j] && !o[j]) {
            o[j] = true;
            stack.push_back(j);
          }
        }
      }
    }
  }
  return out;
}

}  // namespace msam::data
