// Exact Euclidean distance transform of a 3D grid with anisotropic voxel spacing
// (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions", 2012: one
// lower envelope of parabolas per line, one pass per axis, all in double).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>

namespace msam::eval {

using Shape3 = std::array<int64_t, 3>;
using Spacing3 = std::array<double, 3>;

// In place on a C-ordered (shape[0], shape[1], shape[2]) buffer: on entry 0 at feature voxels
// and +inf elsewhere, on exit the squared distance in mm² to the nearest feature voxel
// (+inf everywhere when there is none). Lines of each pass are split over `num_threads`
// threads (0: std::thread::hardware_concurrency()).
void squared_distance_transform_inplace(double* values, const Shape3& shape,
                                        const Spacing3& spacing, int num_threads = 0);

// Distance in mm from every voxel to the nearest nonzero voxel of the 3D tensor `features`
// (float64, same shape; +inf everywhere when `features` has no nonzero voxel). This equals
// scipy.ndimage.distance_transform_edt(~features, sampling=spacing). Throws msam::Error
// for a tensor that is not 3D or a spacing that is not positive and finite.
at::Tensor distance_to_features(const at::Tensor& features, const Spacing3& spacing,
                                int num_threads = 0);

}  // namespace msam::eval
