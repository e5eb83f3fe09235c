// Geometry operations on volumes, without ITK: reorientation to RAS+, resampling,
// voxel <-> world mapping, and ROI extraction / paste-back for whole-scan segmentation.
// Conventions are those of volume.h: tensors are (X, Y, Z) with X = ITK's fastest index,
// physical point = origin + direction · diag(spacing) · index in LPS millimetres.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "msam/data/volume.h"

namespace msam::data {

using Index3 = std::array<int64_t, 3>;
using Point3 = std::array<double, 3>;

// ---- orientation -----------------------------------------------------------------------

// How reorient_to_ras rearranged a volume: RAS tensor axis i is input axis
// `permutation[i]`, reversed when `flipped[i]`. Keeps the input's shape and geometry so
// that a result computed on the RAS volume can be put back exactly.
struct OrientationRecord {
  std::array<int, 3> permutation{0, 1, 2};
  std::array<bool, 3> flipped{false, false, false};
  Index3 input_shape{0, 0, 0};
  Geometry input_geometry;
};

struct Reoriented {
  Volume volume;
  OrientationRecord record;
};

// Permutes and flips the tensor axes so that they point Right, Anterior, Superior as
// closely as the direction matrix allows (nibabel `as_closest_canonical`, torchio
// `ToCanonical`); in ITK's LPS terms the new direction is diag(-1, -1, 1) for an
// axis-aligned scan. Voxel values are moved, never interpolated: every voxel keeps its
// physical position, and origin, spacing and direction are updated exactly (an oblique
// scan keeps its obliquity). Throws msam::Error (naming volume.source) for a non-3-D
// tensor or a singular direction matrix.
Reoriented reorient_to_ras(const Volume& volume);

// What reorient_to_ras does to a volume of this shape and geometry, worked out from the
// direction matrix alone. Throws msam::Error (naming `source`) for a singular matrix.
OrientationRecord ras_orientation(const Index3& shape, const Geometry& geometry,
                                  const std::string& source = "");
// Shape and geometry of the reoriented volume that `record` describes.
Index3 ras_shape(const OrientationRecord& record);
Geometry ras_geometry(const OrientationRecord& record);

// The voxels [start, start + size) of reorient_to_ras's result (RAS voxel indices, a box
// inside the RAS grid), cut out of `data` (in the axis order `record` was made for) before
// reorienting, so that only the box is copied. Contiguous. Throws msam::Error for a tensor
// that does not match the record or a box outside the RAS grid.
at::Tensor ras_region(const at::Tensor& data, const OrientationRecord& record,
                      const Index3& start, const Index3& size);

// Inverse of reorient_to_ras for a tensor on the RAS grid (e.g. a predicted mask): returns
// it in the original axis order with the original geometry. Throws msam::Error when the
// shape does not match the record.
Volume undo_reorient(const at::Tensor& ras_data, const OrientationRecord& record);

// ---- resampling ------------------------------------------------------------------------

enum class Interp { Linear, Nearest };

// Resamples to `target_spacing` (mm) keeping the physical extent: the outer corner of the
// first voxel (continuous index -0.5) stays fixed, the new size along each axis is
// max(1, round(n · spacing / target)), and the new spacing is exactly `target`, so the
// extent n'·target differs from n·spacing by less than target/2 (and not at all when
// n·spacing/target is an integer). Direction is kept. Linear is trilinear (separable),
// clamped to the edge voxels for sample points within half a voxel of the grid; it needs a
// floating-point tensor and keeps its dtype. Nearest rounds halves up and keeps any dtype,
// so integer up-/down-sampling by whole factors copies voxels exactly.
Volume resample(const Volume& volume, const Point3& target_spacing, Interp interp);

// Samples `volume` on the grid given by `shape` and `reference` (the inverse of resample:
// puts a mask computed on the resampled grid back onto the original grid). Both grids must
// share their direction matrix. Sample points further than half a voxel outside `volume`
// get 0. Throws msam::Error for differing directions or a non-3-D tensor.
Volume resample_onto(const Volume& volume, const Index3& shape, const Geometry& reference,
                     Interp interp);

// A voxel grid: shape and geometry.
struct Grid {
  Index3 shape{0, 0, 0};
  Geometry geometry;
};

// The grid resample() produces from a volume of this shape and geometry. Throws
// msam::Error (naming `source`) for a target spacing that is not positive.
Grid resampled_grid(const Index3& shape, const Geometry& geometry, const Point3& target_spacing,
                    const std::string& source = "");

// Supplies the voxels [start, start + size) of an input grid (e.g. cut from a bigger or
// differently ordered tensor), so that a resampling reads only the part it needs.
using RegionReader = std::function<at::Tensor(const Index3& start, const Index3& size)>;

// The voxels [start, start + size) (a box inside `target.shape`) of resample_onto() from
// `input` onto `target`, the input's voxels read through `read`. Every output voxel reads
// the same input voxels with the same weights as in the whole resampling, so the result is
// that of resample_onto cut to the box, bit for bit, while only the input voxels the box
// needs are read and only the box is computed. Same errors as resample_onto.
at::Tensor resample_box(const Grid& input, const RegionReader& read, const Grid& target,
                        Interp interp, const Index3& start, const Index3& size,
                        const std::string& source = "");

// ---- voxel <-> world -------------------------------------------------------------------

// World coordinates are LPS mm (ITK, DICOM). Use ras_from_lps / lps_from_ras for points
// given in RAS mm (3D Slicer, nibabel): they negate x and y.
Point3 voxel_to_world(const Geometry& geometry, const Point3& index);
// Continuous voxel index of a world point (inverse of voxel_to_world); round it for a voxel.
Point3 world_to_voxel(const Geometry& geometry, const Point3& point);
Point3 ras_from_lps(const Point3& point);
Point3 lps_from_ras(const Point3& point);

// ---- regions of interest ---------------------------------------------------------------

// Where a crop lies in the full grid: crop voxel k is full-grid voxel start + k (start may
// be negative and start + size may exceed the full shape near the borders).
struct RoiRecord {
  Index3 start{0, 0, 0};
  Index3 size{128, 128, 128};
  Index3 full_shape{0, 0, 0};
};

struct Roi {
  at::Tensor crop;
  RoiRecord record;
};

// Crops the last three dims of `data` (leading dims, e.g. channels, are kept) to `size`
// centred on `center` (start = center - size/2, the convention of SAM-Med3D's 128³
// crops), padding with `pad_value` where the box leaves the grid. Throws msam::Error for
// a center outside the grid or a non-positive size.
Roi extract_roi(const at::Tensor& data, const Index3& center,
                const Index3& size = {128, 128, 128}, double pad_value = 0.0);

// Puts `crop` (same size as the record) back into a full grid: into a copy of
// `background` when given (its last three dims must be record.full_shape), otherwise into
// zeros. Only the part of the crop that lies inside the grid is written, so
// extract_roi followed by paste_roi reproduces the covered region exactly.
at::Tensor paste_roi(const at::Tensor& crop, const RoiRecord& record,
                     const at::Tensor& background = at::Tensor());

// The voxels [start, start + size) of a 3-D tensor, as a view.
at::Tensor box_view(const at::Tensor& data, const Index3& start, const Index3& size);

// Geometry of a crop described by `record`, so the crop can be written as a volume.
Geometry roi_geometry(const Geometry& full, const RoiRecord& record);

}  // namespace msam::data
