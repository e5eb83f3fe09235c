// A 3D scan or label map with its physical geometry, independent of any file format.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <string>

namespace msam::data {

// ITK conventions: physical point = origin + direction · diag(spacing) · index, in LPS mm.
// direction is row-major 3×3.
struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};
  std::array<double, 3> origin{0.0, 0.0, 0.0};
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};
};

// `data` is (X, Y, Z): the first tensor dim is ITK's fastest-varying index, matching the
// torchio/nibabel arrays SAM-Med3D and M-SAM were trained on (DESIGN.md §5). Images are
// float32; label maps keep an integer dtype.
struct Volume {
  at::Tensor data;
  Geometry geometry;
  std::string source;  // file it came from, for error messages
};

}  // namespace msam::data
