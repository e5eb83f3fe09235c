// Connected parts of a binary mask.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "msam/data/geometry_ops.h"

namespace msam::data {

// The voxels of `mask` (a 3-D bool tensor) joined to any of `seeds` through mask voxels that
// touch by a face, an edge or a corner (26-connectivity). A seed outside the grid or on a
// voxel the mask leaves out starts nothing. A bool tensor of the mask's shape, on the CPU.
at::Tensor connected_to(const at::Tensor& mask, const std::vector<Index3>& seeds);

}  // namespace msam::data
