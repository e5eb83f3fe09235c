#include "msam/interaction/window_continuation.h"

#include "msam/common/error.h"

namespace msam::interaction {

std::vector<WindowFace> continuation_faces(const at::Tensor& lesion, const data::RoiRecord& roi) {
  if (!lesion.defined() || lesion.dim() != 3)
    throw Error("continuation_faces: the lesion must be a 3-D mask");
  std::vector<WindowFace> faces;
  for (int a = 0; a < 3; ++a) {
    std::vector<int64_t> other;
    for (int b = 0; b < 3; ++b)
      if (b != a) other.push_back(b);
    const auto profile = lesion.to(at::kLong).sum(other);  // cross-section per plane along a
    const auto largest = profile.max().item<int64_t>();
    if (largest == 0) return faces;
    for (int side = 0; side < 2; ++side) {
      const int64_t face = side == 0 ? 0 : lesion.size(a) - 1;
      const int64_t g = roi.start[a] + face;
      if (g <= 0 || g >= roi.full_shape[a] - 1) continue;  // the scan ends there
      const auto on_face = profile[face].item<int64_t>();
      if (on_face > 0 && on_face >= kContinuationCrossSection * static_cast<double>(largest))
        faces.push_back({a, side});
    }
  }
  return faces;
}

}  // namespace msam::interaction
