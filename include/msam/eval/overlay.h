// Three-plane overlay PNGs of a case: the image, its ground truth, a prediction and the
// clicks.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "msam/data/geometry_ops.h"
#include "msam/interaction/click.h"

namespace msam::eval {

// Three panels side by side, each a slice through `center` of the (X, Y, Z) arrays:
// axial (XY plane at z), coronal (XZ at y), sagittal (YZ at x). The arrays are RAS+
// (docs/design.md §5), shown in radiological convention: +y (anterior) and +z (superior) point
// up; +x (the patient's right) is on the viewer's left in the axial and coronal panels and
// +y (anterior) on the viewer's left in the sagittal panel.
// The image is grey, windowed to its 1st-99th percentile over the whole volume; the
// ground-truth contour is green and the prediction contour red (drawn over green), where a
// contour is the 2D mask XOR its erosion (4-neighbourhood, outside the slice counts as
// background). Clicks within 1 voxel of a panel's slice are filled squares, foreground
// yellow and background cyan. Panels are enlarged by one integer factor (nearest
// neighbour) so that each is at least 256 px high, and separated by a 4 px dark gap.
// Voxel spacing is ignored: a voxel is a square pixel.
// `gt` and `pred` are masks of the image's shape (any dtype, nonzero = inside); either may
// be undefined to leave that contour out. Bad shapes or indices throw msam::Error.
// Returns (H, W, 3) uint8, row 0 at the top.
at::Tensor render_overlay(const at::Tensor& image, const at::Tensor& gt, const at::Tensor& pred,
                          const std::vector<interaction::Click>& clicks,
                          const data::Index3& center);
void render_overlay_png(const std::string& path, const at::Tensor& image, const at::Tensor& gt,
                        const at::Tensor& pred,
                        const std::vector<interaction::Click>& clicks,
                        const data::Index3& center);

}  // namespace msam::eval
