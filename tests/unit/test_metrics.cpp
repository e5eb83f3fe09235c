#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "msam/common/error.h"
#include "msam/eval/distance_transform.h"
#include "msam/eval/metrics.h"

using namespace msam;
using namespace msam::eval;

namespace {

// Every voxel's distance to the nearest nonzero voxel, by checking all pairs.
at::Tensor brute_force_distances(const at::Tensor& features, const Spacing3& sp) {
  const auto f = features.ne(0);
  const auto points = f.nonzero();  // F×3
  auto out = torch::full(f.sizes(), INFINITY, torch::kDouble);
  if (points.size(0) == 0) return out;
  const auto grid = torch::stack(torch::meshgrid({torch::arange(f.size(0)), torch::arange(f.size(1)),
                                                  torch::arange(f.size(2))}, "ij"),
                                 -1)
                        .reshape({-1, 1, 3})
                        .to(torch::kDouble);
  const auto scale = torch::tensor({sp[0], sp[1], sp[2]}, torch::kDouble);
  const auto diff = (grid - points.to(torch::kDouble).unsqueeze(0)) * scale;
  return std::get<0>(diff.pow(2).sum(-1).min(1)).sqrt().reshape(f.sizes());
}

// mask XOR erosion with the 6-connected cross and border value 0, on the whole volume.
at::Tensor brute_force_surface(const at::Tensor& mask) {
  const auto m = torch::constant_pad_nd(mask.ne(0).to(torch::kByte), {1, 1, 1, 1, 1, 1}, 0);
  auto eroded = m.clone();
  for (int axis = 0; axis < 3; ++axis)
    for (int shift : {-1, 1}) eroded = eroded & torch::roll(m, shift, axis);
  using torch::indexing::Slice;
  eroded = eroded.index({Slice(1, -1), Slice(1, -1), Slice(1, -1)});
  return mask.ne(0) & eroded.eq(0);
}

double sorted_percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double idx = (v.size() - 1) * q / 100.0;
  const size_t lo = static_cast<size_t>(std::floor(idx));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

std::vector<double> to_vector(const at::Tensor& t) {
  const auto c = t.to(torch::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

// Random blobs: thresholded smoothed noise, so surfaces have holes, islands and corners.
at::Tensor random_blobs(const std::vector<int64_t>& shape, double threshold) {
  auto x = torch::rand(shape, torch::kDouble).unsqueeze(0).unsqueeze(0);
  x = torch::avg_pool3d(x, 3, 1, 1);
  return x.squeeze().gt(threshold);
}

}  // namespace

TEST(DistanceTransform, MatchesBruteForceOnAnisotropicRandomGrids) {
  torch::manual_seed(7);
  const Spacing3 sp{0.8, 1.3, 2.1};
  for (auto shape : std::vector<std::vector<int64_t>>{{7, 9, 11}, {1, 13, 5}, {20, 3, 17}}) {
    for (double density : {0.02, 0.3}) {
      const auto f = torch::rand(shape).lt(density);
      const auto expected = brute_force_distances(f, sp);
      for (int threads : {1, 3}) {
        const auto got = distance_to_features(f, sp, threads);
        EXPECT_TRUE(torch::allclose(got, expected, 1e-12, 1e-12))
            << "shape " << f.sizes() << " density " << density << " threads " << threads
            << " max |diff| " << (got - expected).abs().max().item<double>();
      }
    }
  }
}

TEST(DistanceTransform, EmptyAndFullGrids) {
  const auto none = distance_to_features(torch::zeros({4, 5, 6}), {1, 2, 3});
  EXPECT_TRUE(torch::all(none.isinf()).item<bool>());
  const auto all = distance_to_features(torch::ones({4, 5, 6}), {1, 2, 3});
  EXPECT_EQ(all.abs().max().item<double>(), 0.0);
  // One feature voxel: the exact anisotropic distance at the far corner.
  auto one = torch::zeros({4, 5, 6});
  one[0][0][0] = 1;
  EXPECT_DOUBLE_EQ(distance_to_features(one, {1, 2, 3})[3][4][5].item<double>(),
                   std::sqrt(3.0 * 3.0 + 8.0 * 8.0 + 15.0 * 15.0));
  EXPECT_THROW(distance_to_features(torch::zeros({4, 5}), {1, 1, 1}), Error);
  EXPECT_THROW(distance_to_features(torch::zeros({4, 5, 6}), {1, 0, 1}), Error);
}

// Every metric against a full-volume brute-force computation (no crop, all-pairs distances),
// for random masks, including masks that touch the volume border.
TEST(Metrics, MatchBruteForceOnRandomMasks) {
  torch::manual_seed(11);
  const Spacing3 sp{0.7, 1.0, 1.9};
  for (int trial = 0; trial < 4; ++trial) {
    const auto pred = random_blobs({14, 12, 10}, 0.5 + 0.02 * trial);
    const auto gt = random_blobs({14, 12, 10}, 0.52);
    MetricOptions opt;
    opt.spacing = sp;
    opt.nsd_tolerance_mm = 1.5;
    const auto m = compute_case_metrics(pred, gt, opt);

    const auto sp_pred = brute_force_surface(pred), sp_gt = brute_force_surface(gt);
    const auto d_pg = to_vector(brute_force_distances(sp_gt, sp).masked_select(sp_pred));
    const auto d_gp = to_vector(brute_force_distances(sp_pred, sp).masked_select(sp_gt));
    ASSERT_FALSE(d_pg.empty());
    ASSERT_FALSE(d_gp.empty());
    EXPECT_EQ(m.pred_surface_voxels, static_cast<int64_t>(d_pg.size()));
    EXPECT_EQ(m.gt_surface_voxels, static_cast<int64_t>(d_gp.size()));

    const double both = (pred & gt).sum().item<double>();
    const double np = pred.sum().item<double>(), ng = gt.sum().item<double>();
    EXPECT_DOUBLE_EQ(m.dice, 2 * both / (np + ng));
    EXPECT_DOUBLE_EQ(m.iou, both / (np + ng - both));
    EXPECT_NEAR(m.hd_pred_to_gt, *std::max_element(d_pg.begin(), d_pg.end()), 1e-12);
    EXPECT_NEAR(m.hd_gt_to_pred, *std::max_element(d_gp.begin(), d_gp.end()), 1e-12);
    EXPECT_NEAR(m.hd, std::max(m.hd_pred_to_gt, m.hd_gt_to_pred), 0.0);
    EXPECT_NEAR(m.hd95_pred_to_gt, sorted_percentile(d_pg, 95), 1e-12);
    EXPECT_NEAR(m.hd95_gt_to_pred, sorted_percentile(d_gp, 95), 1e-12);
    double sum = 0;
    int64_t within = 0;
    for (const auto* d : {&d_pg, &d_gp})
      for (double x : *d) {
        sum += x;
        within += x <= 1.5;
      }
    const double n_all = d_pg.size() + d_gp.size();
    EXPECT_NEAR(m.assd, sum / n_all, 1e-12);
    EXPECT_DOUBLE_EQ(m.nsd, within / n_all);
  }
}

// The union-bbox crop is exact: padding the volume with background changes nothing, also
// for masks that touch the original border (border value 0 of the erosion).
TEST(Metrics, CropEqualsUncroppedVolume) {
  torch::manual_seed(3);
  const auto pred = random_blobs({16, 11, 9}, 0.5), gt = random_blobs({16, 11, 9}, 0.51);
  MetricOptions opt;
  opt.spacing = {1.2, 0.6, 3.0};
  const auto tight = compute_case_metrics(pred, gt, opt);
  const auto big_pred = torch::constant_pad_nd(pred, {2, 5, 0, 3, 4, 1}, 0);
  const auto big_gt = torch::constant_pad_nd(gt, {2, 5, 0, 3, 4, 1}, 0);
  opt.num_threads = 1;
  const auto padded = compute_case_metrics(big_pred, big_gt, opt);
  const auto a = metric_values(tight), b = metric_values(padded);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].second, b[i].second) << a[i].first;
  // Any dtype works, nonzero = foreground.
  const auto float_byte =
      compute_case_metrics(big_pred.to(torch::kFloat) * 3, big_gt.to(torch::kByte), opt);
  const auto c = metric_values(float_byte);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].second, c[i].second) << a[i].first;
  EXPECT_EQ(tight.pred_surface_voxels, padded.pred_surface_voxels);
  EXPECT_EQ(tight.gt_surface_voxels, padded.gt_surface_voxels);
}

TEST(Metrics, NormalisedSurfaceDiceAtTolerance) {
  // Two 6×6×6 cubes, the prediction shifted by one voxel along axis 0 (spacing 2 mm).
  auto gt = torch::zeros({12, 12, 12}, torch::kBool), pred = torch::zeros({12, 12, 12}, torch::kBool);
  using torch::indexing::Slice;
  gt.index_put_({Slice(3, 9), Slice(3, 9), Slice(3, 9)}, true);
  pred.index_put_({Slice(4, 10), Slice(3, 9), Slice(3, 9)}, true);
  MetricOptions opt;
  opt.spacing = {2.0, 1.0, 1.0};
  opt.nsd_tolerance_mm = 0.0;
  const auto exact = compute_case_metrics(pred, gt, opt);
  opt.nsd_tolerance_mm = 2.0;
  const auto within_shift = compute_case_metrics(pred, gt, opt);
  // A 6³ cube has 6³ − 4³ = 152 surface voxels. At τ = 0 only coinciding surface voxels count:
  // the side walls of the 5 shared slices (5·20 = 100 per cube). At τ = 2 mm every voxel counts.
  EXPECT_EQ(exact.pred_surface_voxels, 152);
  EXPECT_DOUBLE_EQ(exact.nsd, 200.0 / 304.0);
  EXPECT_DOUBLE_EQ(within_shift.nsd, 1.0);
  EXPECT_DOUBLE_EQ(within_shift.hd, 2.0);
}

TEST(Metrics, EmptyMasksFollowMonai) {
  auto gt = torch::zeros({6, 6, 6}, torch::kByte);
  gt[2][2][2] = 1;
  const auto empty = torch::zeros({6, 6, 6}, torch::kByte);
  for (const auto& m : {compute_case_metrics(empty, gt), compute_case_metrics(gt, empty)}) {
    EXPECT_EQ(m.dice, 0.0);
    EXPECT_EQ(m.iou, 0.0);
    EXPECT_TRUE(std::isinf(m.hd) && m.hd > 0);
    EXPECT_TRUE(std::isnan(m.hd95));
    EXPECT_TRUE(std::isinf(m.assd) && m.assd > 0);
    EXPECT_EQ(m.nsd, 0.0);
  }
  const auto none = compute_case_metrics(empty, empty);
  for (const auto& [name, v] : metric_values(none)) EXPECT_TRUE(std::isnan(v)) << name;
  EXPECT_THROW(compute_case_metrics(empty, torch::zeros({6, 6, 5})), Error);
  EXPECT_THROW(compute_case_metrics(torch::zeros({6, 6}), torch::zeros({6, 6})), Error);
  MetricOptions bad;
  bad.nsd_tolerance_mm = -1;
  EXPECT_THROW(compute_case_metrics(gt, gt, bad), Error);
}

TEST(Metrics, LinearPercentileLikeNumpy) {
  std::vector<double> v{4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(linear_percentile(v, 95), 3.85);  // numpy.percentile([1,2,3,4], 95)
  v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(linear_percentile(v, 50), 2.5);
  v = {7};
  EXPECT_EQ(linear_percentile(v, 95), 7);
  v = {INFINITY, INFINITY, INFINITY};
  EXPECT_TRUE(std::isnan(linear_percentile(v, 95)));  // inf − inf, as numpy
  v = {};
  EXPECT_TRUE(std::isnan(linear_percentile(v, 95)));
}

TEST(Metrics, SummaryCountsNonFiniteSeparately) {
  const auto s = summarize(std::vector<double>{1, 2, 3, 4, NAN, INFINITY});
  EXPECT_EQ(s.n_cases, 6);
  EXPECT_EQ(s.n_finite, 4);
  EXPECT_EQ(s.n_nan, 1);
  EXPECT_EQ(s.n_pos_inf, 1);
  EXPECT_EQ(s.n_nonfinite(), 2);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.std, std::sqrt(5.0 / 3.0));  // ddof 1
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 4);
  const auto one = summarize(std::vector<double>{0.5});
  EXPECT_EQ(one.mean, 0.5);
  EXPECT_TRUE(std::isnan(one.std));
  const auto none = summarize(std::vector<double>{NAN});
  EXPECT_TRUE(std::isnan(none.mean));

  CaseMetrics a, b;
  a.dice = 0.8;
  b.dice = 0.6;
  b.hd = INFINITY;
  const auto table = summarize({a, b});
  ASSERT_EQ(table.size(), 6u);
  EXPECT_EQ(table[0].first, "dice");
  EXPECT_DOUBLE_EQ(table[0].second.mean, 0.7);
  EXPECT_EQ(table[2].first, "hd");
  EXPECT_EQ(table[2].second.n_pos_inf, 1);
  EXPECT_EQ(table[2].second.mean, 0.0);
}
