// Per-case segmentation metrics (Dice, IoU, HD, HD95, ASSD, NSD) with the MONAI 1.2 surface
// conventions that the reference evaluation used (docs/design.md §8; pinned by the fixture
// loss_metrics.safetensors, `output.metrics.*`), and their summary over a set of cases.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "msam/eval/distance_transform.h"

namespace msam::eval {

struct MetricOptions {
  Spacing3 spacing{1.0, 1.0, 1.0};  // mm per voxel along tensor axes 0, 1, 2
  double nsd_tolerance_mm = 1.0;     // τ of the normalised surface Dice
  int num_threads = 0;               // distance transform threads (0: all cores)
};

// Conventions (MONAI 1.2 with include_background=True, reproduced exactly):
// * surface S = mask XOR binary_erosion(mask) with the 6-connected cross, border value 0;
// * d_pg = distance (mm) from each voxel of S_pred to the nearest voxel of S_gt, d_gp the reverse;
// * hd = max(hd_pred_to_gt, hd_gt_to_pred) with Python's max: a NaN first argument wins;
// * hd95 = max of the two directed 95th percentiles (numpy's default linear interpolation);
// * assd = mean of the concatenation of d_pg and d_gp (not the mean of the two means);
// * nsd = (|{d_pg ≤ τ}| + |{d_gp ≤ τ}|) / (|d_pg| + |d_gp|) (MONAI compute_surface_dice);
// * dice = 2|P∩G| / (|P| + |G|), iou = |P∩G| / |P∪G|.
// Empty masks, as MONAI's get_surface_distance treats them: when exactly one mask is empty,
// both directed distance lists become +inf repeated once per surface voxel of the other mask,
// so hd = assd = +inf, hd95 = NaN (numpy's percentile of all-inf is inf − inf), nsd = 0,
// dice = iou = 0. When both are empty every value is NaN. Callers report these cases; they
// are never averaged as 0 (see summarize).
struct CaseMetrics {
  double dice = 0, iou = 0, hd = 0, hd95 = 0, assd = 0, nsd = 0;
  double hd_pred_to_gt = 0, hd_gt_to_pred = 0, hd95_pred_to_gt = 0, hd95_gt_to_pred = 0;
  int64_t pred_voxels = 0, gt_voxels = 0;
  int64_t pred_surface_voxels = 0, gt_surface_voxels = 0;
};

// `pred` and `gt`: 3D tensors of the same shape, nonzero = foreground. Distances are computed
// only inside the bounding box of pred ∪ gt, which holds both surfaces whole, so the crop is
// exact. Throws msam::Error for mismatched or non-3D shapes, a bad spacing or tolerance.
CaseMetrics compute_case_metrics(const at::Tensor& pred, const at::Tensor& gt,
                                 const MetricOptions& options = {});

// 2|P∩G| / (|P| + |G|) of two masks of one shape (nonzero = foreground), NaN when both are
// empty: the Dice after each click, without the surface metrics.
double dice_score(const at::Tensor& pred, const at::Tensor& gt);

// The headline metrics of one case by name, in the order of metric_table().
std::vector<std::pair<std::string, double>> metric_values(const CaseMetrics& m);

// numpy.percentile(values, q) with the default linear method (values may be reordered).
// NaN for an empty list.
double linear_percentile(std::vector<double>& values, double q);

// Summary statistics over the finite values only. Non-finite values are counted, never
// averaged: a case with hd = inf (empty prediction) shows up in n_pos_inf, not as a number.
struct MetricSummary {
  int64_t n_cases = 0, n_finite = 0, n_nan = 0, n_pos_inf = 0, n_neg_inf = 0;
  double mean = 0, std = 0, median = 0, min = 0, max = 0;  // NaN when n_finite == 0
  // std is the sample standard deviation (ddof 1, numpy.std(x, ddof=1)); NaN for n_finite < 2.
  int64_t n_nonfinite() const { return n_nan + n_pos_inf + n_neg_inf; }
};

MetricSummary summarize(const std::vector<double>& values);
// Per metric of metric_values(), in the same order.
std::vector<std::pair<std::string, MetricSummary>> summarize(const std::vector<CaseMetrics>& cases);

}  // namespace msam::eval
