// The deterministic part of the SAM-Med3D / M-SAM preprocessing (docs/design.md §6), per case:
// reorient to RAS+, optional resample, clamp CT, binarise the target, crop-or-pad to 128³
// around the lesion, z-score (CT over voxels > 0, MR over voxels ≠ 0). Every step is recorded so that a prediction on
// the 128³ patch can be put back onto the original scan grid.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "msam/common/error.h"
#include "msam/data/dataset.h"
#include "msam/data/geometry_ops.h"
#include "msam/data/volume.h"

namespace msam::data {

// What to do when image and label (of the same shape) disagree in spacing, origin or
// direction beyond `geometry_tolerance`. The reference silently copies the label's origin
// and direction onto the image; either way the voxels are paired index by index, so a
// misregistered label trains on the wrong voxels. Run config: data.copy_image_geometry.
enum class GeometryMismatch {
  Error,              // the case fails, naming both files and the field that differs
  CopyImageGeometry,  // trust the image: its geometry is used for the label too
};

struct PreprocessSettings {
  std::optional<Point3> target_spacing;  // mm; no resampling when unset
  Index3 patch_size{128, 128, 128};
  // Lesions with at most this many voxels inside the patch are skipped (reference: 1000).
  int64_t min_label_voxels = 1000;
  GeometryMismatch on_geometry_mismatch = GeometryMismatch::Error;
  double geometry_tolerance = 1e-3;  // mm for spacing and origin, absolute for direction
};

// Canonical JSON of the settings; its hash (with a pipeline version) keys the cache.
std::string settings_json(const PreprocessSettings& settings);

// The first geometry field in which `other` differs from `image` by more than `tolerance`,
// as "spacing [a, b, c] vs image [d, e, f]" (then origin, direction), or "" when they agree.
std::string geometry_difference(const Geometry& image, const Geometry& other, double tolerance);

// Everything needed to map the patch back onto the scan as it was read from disk.
struct PreprocessRecord {
  OrientationRecord orientation;
  bool resampled = false;
  Index3 ras_shape{0, 0, 0};  // grid before resampling (after reorientation)
  Geometry ras_geometry;
  Geometry grid_geometry;     // grid the patch was cut from (after resampling)
  RoiRecord crop;             // patch voxel k is grid voxel crop.start + k
  Geometry patch_geometry;    // physical placement of the patch itself
};

struct PreparedCase {
  at::Tensor image;  // float32, patch_size, z-scored
  at::Tensor label;  // uint8 {0, 1}, patch_size
  PreprocessRecord record;
  int64_t label_voxels = 0;  // inside the patch
};

// A case that is valid input but unusable for training (empty or too small lesion). The
// prepare step reports it as skipped, with this reason, rather than as a failure.
class CaseSkipped : public Error {
 public:
  using Error::Error;
};

// Only the patch is reoriented, resampled and clamped: those steps move, interpolate or
// clamp voxels independently of the rest of the scan, so cutting the patch out first gives
// the same result bit for bit as running them on the whole volume and cropping after, at a
// fraction of the cost for a 512×512×N CT. The whole volume is only scanned for the checks
// below and the lesion's bounding box (and, when resampling, the label is resampled whole,
// since the patch is centred on the resampled lesion).
//
// Throws msam::Error naming the file for: non-3-D data, image/label shape mismatch,
// geometry mismatch (unless settings say to copy the image's), NaN/Inf intensities, label
// values that are negative or fractional, values other than 0/1 when no targets are given,
// and no voxels to normalise over. Throws CaseSkipped for an empty target or a lesion of at
// most min_label_voxels voxels.
PreparedCase preprocess_case(const Volume& image, const Volume& label, const CaseSource& source,
                             const PreprocessSettings& settings);

// Steps exposed for reuse and testing.

// label ∈ targets (targets empty: label != 0) as uint8 0/1, after checking the values.
at::Tensor binarise_label(const Volume& label, const std::vector<int>& targets);

// torchio CropOrPad(mask_name=...) placement: centre of the mask's bounding box (half-voxel
// centres rounded down for even sizes), patch voxel k at grid voxel start + k.
RoiRecord crop_or_pad_placement(const at::Tensor& mask, const Index3& patch_size);

// The voxels whose mean and std z-score a patch. kPositive: > 0, the reference's rule
// (torchio ZNormalization(masking_method=lambda x: x > 0)), kept for CT, whose weights were
// trained with it. kNonzero: ≠ 0, nnU-Net's brain mask, for MR and other modalities: the same
// voxels as > 0 on a non-negative scan, but a scan that was z-scored before it was shared
// (negative brain values, background 0) keeps its whole brain in the statistics instead of
// its brighter half (BraTS FLAIR z-scored beforehand, a model trained on raw scans: held-out
// Dice@10 0.796 with > 0, 0.807 with ≠ 0, 0.813 on the raw scans; README).
enum class ZScoreVoxels { kPositive, kNonzero };
ZScoreVoxels zscore_voxels(Modality modality);

// The intensity of a scan's background, subtracted from MR and other modalities before any
// other step so that their background is 0, as the z-score over voxels ≠ 0 and the zero padding
// of crops and resampling take it to be: the value that more than half of the voxels on the
// scan's six faces share (0 in BraTS's skull-stripped files, −mean/sd in a scan z-scored over
// its whole volume before it was shared, a constant fill around a registered scan), or 0 when
// no value does (an unstripped scan's noisy background). 0 for CT, whose Hounsfield units the
// reference's rule z-scores as they are.
double background_value(const at::Tensor& scan, Modality modality);

// Mean and unbiased std of the `over` voxels, applied to every voxel. Throws msam::Error
// (naming `source`) when fewer than two voxels count or their std is 0 (torchio would produce
// NaNs or raise).
at::Tensor zscore(const at::Tensor& image, ZScoreVoxels over, const std::string& source);

// Inverse of the geometric steps for a patch-sized tensor (a predicted mask): pasted into
// zeros on the processing grid, resampled back (nearest) if the case was resampled, and
// reoriented to the file's axis order. The result lies on the original scan grid.
Volume restore_to_original(const at::Tensor& patch, const PreprocessRecord& record);

// The other way: a mask on the original scan grid (e.g. another tool's prediction) taken
// through the recorded steps onto the patch, as the case's label was: reoriented, resampled
// (nearest) if the case was, cut out, 0 outside the grid. Keeps the mask's dtype. Throws
// msam::Error when its shape is not the scan's.
at::Tensor patch_from_original(const at::Tensor& mask, const PreprocessRecord& record);

}  // namespace msam::data
