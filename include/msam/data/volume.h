// A 3D scan or label map with its physical geometry, independent of any file format.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace msam::data {

// ITK conventions: physical point = origin + direction · diag(spacing) · index, in LPS mm.
// direction is row-major 3×3.
struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};
  std::array<double, 3> origin{0.0, 0.0, 0.0};
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};
};

// `data` is (X, Y, Z): the first tensor dim is ITK's fastest-varying index, matching the
// torchio/nibabel arrays SAM-Med3D and M-SAM were trained on (docs/design.md §5). Images are
// float32; label maps keep an integer dtype. The strides may be any: msam::imageio returns
// a view of the file's x-fastest buffer (strides (1, X, X·Y)) rather than a transposed
// copy, so code that reads raw memory calls .contiguous() first.
struct Volume {
  at::Tensor data;
  Geometry geometry;
  std::string source;  // file it came from, for error messages
};

// `data` with its dims permuted into memory order (largest stride first), contiguous, and
// the permutation back (`restore`: permute a result computed on `data` by it to get
// `data`'s dim order). When `data` is a permuted view of one buffer, such as a Volume read
// from a file, no copy is made, and whole-volume loops and reductions then run through
// memory in order: ATen's follow the dim order and would stride across the whole buffer
// for every voxel of the (X, Y, Z) view.
struct MemoryOrder {
  at::Tensor data;
  std::vector<int64_t> dims;     // data's dim i is the input's dim dims[i]
  std::vector<int64_t> restore;  // data.permute(restore) has the input's dim order
};
MemoryOrder memory_order(const at::Tensor& data);

// Number of NaN and infinite values (0 for integer tensors). The usual all-finite case
// costs one min/max pass, since a NaN turns both into NaN and an infinity becomes one of
// them; the voxels are only counted, for the error message, when that pass finds one.
int64_t count_non_finite(const at::Tensor& data);

// Throws msam::Error "<volume.source>: N voxels are NaN or Inf" when `volume` has any: they
// would silently poison normalisation, training and inference, so no scan with them is used.
void require_finite(const Volume& volume);

}  // namespace msam::data
