#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "msam/common/error.h"
#include "msam/data/geometry_ops.h"

using namespace msam;
using namespace msam::data;

namespace {

Volume make_volume(Index3 shape, Geometry g, at::ScalarType dtype = at::kFloat) {
  auto data = torch::arange(shape[0] * shape[1] * shape[2], torch::kLong)
                  .view({shape[0], shape[1], shape[2]})
                  .to(dtype);
  return Volume{data, g, "test.nii.gz"};
}

Geometry geometry(std::array<double, 9> direction, Point3 spacing = {1.0, 2.0, 3.0},
                  Point3 origin = {10.0, -20.0, 30.0}) {
  Geometry g;
  g.direction = direction;
  g.spacing = spacing;
  g.origin = origin;
  return g;
}

// Rotation by `deg` about the z axis.
std::array<double, 9> rotation_z(double deg) {
  const double a = deg * M_PI / 180.0, c = std::cos(a), s = std::sin(a);
  return {c, -s, 0, s, c, 0, 0, 0, 1};
}

// Every voxel of `out` holds the value of the `in` voxel at the same physical point.
void expect_same_physical_content(const Volume& in, const Volume& out) {
  ASSERT_EQ(in.data.numel(), out.data.numel());
  auto a = in.data.accessor<float, 3>();
  auto b = out.data.accessor<float, 3>();
  for (int64_t x = 0; x < out.data.size(0); ++x) {
    for (int64_t y = 0; y < out.data.size(1); ++y) {
      for (int64_t z = 0; z < out.data.size(2); ++z) {
        const Point3 world = voxel_to_world(out.geometry, {double(x), double(y), double(z)});
        const Point3 idx = world_to_voxel(in.geometry, world);
        Index3 k;
        for (int i = 0; i < 3; ++i) {
          k[i] = std::llround(idx[i]);
          ASSERT_NEAR(idx[i], double(k[i]), 1e-9) << "not on the input grid";
        }
        ASSERT_EQ(b[x][y][z], a[k[0]][k[1]][k[2]]) << x << "," << y << "," << z;
      }
    }
  }
}

void expect_ras_axes(const Geometry& g) {
  // RAS direction = diag(-1, -1, 1) · LPS direction: its diagonal dominates and is positive.
  const double ras_diag[3] = {-g.direction[0], -g.direction[4], g.direction[8]};
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(ras_diag[i], 0.7) << "axis " << i;
  }
}

void check_reorientation(const Volume& in, const std::array<double, 9>* expected_direction) {
  const auto r = reorient_to_ras(in);
  expect_ras_axes(r.volume.geometry);
  if (expected_direction) {
    for (int k = 0; k < 9; ++k) EXPECT_NEAR(r.volume.geometry.direction[k], (*expected_direction)[k], 1e-12);
  }
  expect_same_physical_content(in, r.volume);
  const Volume back = undo_reorient(r.volume.data, r.record);
  EXPECT_TRUE(torch::equal(back.data, in.data));
  for (int i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(back.geometry.spacing[i], in.geometry.spacing[i]);
    EXPECT_DOUBLE_EQ(back.geometry.origin[i], in.geometry.origin[i]);
  }
  EXPECT_EQ(back.geometry.direction, in.geometry.direction);
}

const std::array<double, 9> kRas{-1, 0, 0, 0, -1, 0, 0, 0, 1};

}  // namespace

TEST(Reorient, LpsIdentityFlipsXAndY) {
  const Volume in = make_volume({4, 5, 6}, geometry({1, 0, 0, 0, 1, 0, 0, 0, 1}));
  const auto r = reorient_to_ras(in);
  EXPECT_EQ(r.record.permutation, (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(r.record.flipped, (std::array<bool, 3>{true, true, false}));
  // The new first voxel is the old (3, 4, 0): origin + (3·1, 4·2, 0) in LPS.
  EXPECT_DOUBLE_EQ(r.volume.geometry.origin[0], 13.0);
  EXPECT_DOUBLE_EQ(r.volume.geometry.origin[1], -12.0);
  EXPECT_DOUBLE_EQ(r.volume.geometry.origin[2], 30.0);
  check_reorientation(in, &kRas);
}

TEST(Reorient, AlreadyRasIsUnchanged) {
  const Volume in = make_volume({4, 5, 6}, geometry(kRas));
  const auto r = reorient_to_ras(in);
  EXPECT_TRUE(torch::equal(r.volume.data, in.data));
  EXPECT_EQ(r.volume.geometry.origin, in.geometry.origin);
  check_reorientation(in, &kRas);
}

TEST(Reorient, FlippedAxes) {
  // x points Right (already RAS), y Anterior, z Inferior: only z is flipped.
  const Volume in = make_volume({3, 4, 5}, geometry({-1, 0, 0, 0, -1, 0, 0, 0, -1}));
  const auto r = reorient_to_ras(in);
  EXPECT_EQ(r.record.flipped, (std::array<bool, 3>{false, false, true}));
  check_reorientation(in, &kRas);
}

TEST(Reorient, PermutedAxes) {
  // Voxel axis 0 runs Superior, axis 1 runs Left, axis 2 runs Posterior (columns, LPS).
  const Volume in = make_volume({3, 4, 5}, geometry({0, 1, 0, 0, 0, 1, 1, 0, 0}));
  const auto r = reorient_to_ras(in);
  EXPECT_EQ(r.record.permutation, (std::array<int, 3>{1, 2, 0}));
  EXPECT_EQ(r.volume.data.sizes(), (at::IntArrayRef{4, 5, 3}));
  EXPECT_EQ(r.volume.geometry.spacing, (Point3{2.0, 3.0, 1.0}));
  check_reorientation(in, &kRas);
}

TEST(Reorient, ObliqueKeepsObliquity) {
  const Volume in = make_volume({5, 4, 3}, geometry(rotation_z(20.0)));
  const auto r = reorient_to_ras(in);
  // x and y are flipped, so both columns are negated: the rotation's -sin becomes +sin.
  EXPECT_NEAR(r.volume.geometry.direction[1], std::sin(20.0 * M_PI / 180.0), 1e-12);
  check_reorientation(in, nullptr);
  // 110° makes voxel axis 1 the closest to Right and axis 0 the closest to Anterior.
  const Volume swapped = make_volume({5, 4, 3}, geometry(rotation_z(110.0)));
  EXPECT_EQ(reorient_to_ras(swapped).record.permutation, (std::array<int, 3>{1, 0, 2}));
  check_reorientation(swapped, nullptr);
}

TEST(Reorient, RejectsBadInput) {
  EXPECT_THROW(reorient_to_ras(Volume{torch::zeros({2, 2}), Geometry{}, "a.nii"}), Error);
  EXPECT_THROW(reorient_to_ras(make_volume({2, 2, 2}, geometry({1, 0, 0, 1, 0, 0, 0, 0, 1}))),
               Error);
  const auto r = reorient_to_ras(make_volume({2, 3, 4}, geometry({0, 1, 0, 1, 0, 0, 0, 0, 1})));
  EXPECT_THROW(undo_reorient(torch::zeros({2, 3, 4}), r.record), Error);
}

TEST(Reorient, RegionIsTheBoxOfTheWholeReorientation) {
  // Permuted and flipped, oblique, and given as an x-fastest view (as ITK's buffer is read).
  const std::array<double, 9> permuted{0, 0, -1, 1, 0, 0, 0, -1, 0};
  for (const auto& direction : {permuted, rotation_z(30.0), kRas}) {
    const Volume in = make_volume({7, 6, 5}, geometry(direction));
    const Volume strided{in.data.permute({2, 1, 0}).contiguous().permute({2, 1, 0}), in.geometry, ""};
    const auto whole = reorient_to_ras(in);
    const Index3 shape = ras_shape(whole.record);
    EXPECT_EQ(whole.volume.data.sizes(), (at::IntArrayRef{shape[0], shape[1], shape[2]}));
    EXPECT_EQ(ras_geometry(whole.record).origin, whole.volume.geometry.origin);
    const Index3 start{1, 0, 2}, size{shape[0] - 2, 3, shape[2] - 2};
    const auto expected = box_view(whole.volume.data, start, size);
    EXPECT_TRUE(torch::equal(ras_region(in.data, whole.record, start, size), expected));
    EXPECT_TRUE(torch::equal(ras_region(strided.data, whole.record, start, size), expected));
    EXPECT_THROW(ras_region(in.data, whole.record, {0, 0, 0}, {shape[0] + 1, 1, 1}), Error);
    EXPECT_THROW(ras_region(in.data, whole.record, {-1, 0, 0}, {1, 1, 1}), Error);
    EXPECT_THROW(ras_region(torch::zeros({7, 6, 4}), whole.record, {0, 0, 0}, {1, 1, 1}), Error);
  }
}

TEST(Resample, BoxEqualsTheWholeResamplingCutAndReadsOnlyWhatItNeeds) {
  const Volume in = make_volume({30, 20, 12}, geometry(rotation_z(30.0), {0.7, 0.9, 2.5}));
  const Grid input{{30, 20, 12}, in.geometry};
  const auto read = [&](Index3* asked) {
    return [&in, asked](const Index3& start, const Index3& size) {
      *asked = size;
      return box_view(in.data, start, size);
    };
  };
  const Index3 start{3, 7, 2}, size{9, 5, 12};
  for (const Interp interp : {Interp::Linear, Interp::Nearest}) {
    // Onto a coarser and a finer grid, and onto a shifted one whose last slices lie outside.
    Geometry shifted = in.geometry;
    shifted.origin[2] += 10.0;
    const Grid coarse = resampled_grid(input.shape, in.geometry, {1.3, 1.1, 2.0});
    for (const Grid& target : {coarse, resampled_grid(input.shape, in.geometry, {0.5, 0.5, 1.0}),
                               Grid{{20, 16, 16}, shifted}}) {
      const Volume whole = resample_onto(in, target.shape, target.geometry, interp);
      Index3 asked{};
      const auto box = resample_box(input, read(&asked), target, interp, start, size);
      EXPECT_TRUE(torch::equal(box, box_view(whole.data, start, size)));
      EXPECT_LT(asked[0] * asked[1], 30 * 20);
    }
    Index3 unused{};
    EXPECT_THROW(resample_box(input, read(&unused), coarse, interp, {0, 0, 0}, {coarse.shape[0] + 1, 1, 1}),
                 Error);
  }
  const Grid grid = resampled_grid(input.shape, in.geometry, {1.3, 1.1, 2.0});
  const Volume via_resample = resample(in, {1.3, 1.1, 2.0}, Interp::Linear);
  EXPECT_EQ(via_resample.data.sizes(), (at::IntArrayRef{grid.shape[0], grid.shape[1], grid.shape[2]}));
  EXPECT_EQ(via_resample.geometry.origin, grid.geometry.origin);
  EXPECT_THROW(resampled_grid(input.shape, in.geometry, {1, -1, 1}), Error);
}

TEST(Resample, KeepsPhysicalExtentAndCorner) {
  const Volume in = make_volume({10, 7, 5}, geometry(rotation_z(30.0), {1.0, 1.5, 2.5}));
  const Point3 target{2.0, 1.0, 1.5};
  const Volume out = resample(in, target, Interp::Linear);
  EXPECT_EQ(out.data.sizes(), (at::IntArrayRef{5, 11, 8}));
  EXPECT_EQ(out.geometry.spacing, target);
  EXPECT_EQ(out.geometry.direction, in.geometry.direction);
  for (int i = 0; i < 3; ++i) {
    EXPECT_LE(std::abs(out.data.size(i) * target[i] - in.data.size(i) * in.geometry.spacing[i]),
              target[i] / 2 + 1e-12);
  }
  const Point3 a = voxel_to_world(in.geometry, {-0.5, -0.5, -0.5});
  const Point3 b = voxel_to_world(out.geometry, {-0.5, -0.5, -0.5});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a[i], b[i], 1e-9);
}

TEST(Resample, NearestIsExactForIntegerFactors) {
  const Volume in = make_volume({6, 9, 3}, geometry(kRas, {1.0, 1.0, 1.0}), at::kLong);
  const Volume up = resample(in, {0.5, 0.5, 0.5}, Interp::Nearest);
  ASSERT_EQ(up.data.sizes(), (at::IntArrayRef{12, 18, 6}));
  EXPECT_EQ(up.data.scalar_type(), at::kLong);
  const auto idx = [](int64_t n, int64_t f) { return torch::arange(n, torch::kLong).div(f, "floor"); };
  const auto expect_up = in.data.index_select(0, idx(12, 2)).index_select(1, idx(18, 2)).index_select(2, idx(6, 2));
  EXPECT_TRUE(torch::equal(up.data, expect_up));

  const Volume down = resample(in, {3.0, 3.0, 3.0}, Interp::Nearest);
  ASSERT_EQ(down.data.sizes(), (at::IntArrayRef{2, 3, 1}));
  const auto centre = [](int64_t n) { return torch::arange(n, torch::kLong) * 3 + 1; };
  EXPECT_TRUE(torch::equal(down.data, in.data.index_select(0, centre(2)).index_select(1, centre(3)).index_select(2, centre(1))));

  // Putting the upsampled volume back on the original grid is exact.
  const Volume back = resample_onto(up, {6, 9, 3}, in.geometry, Interp::Nearest);
  EXPECT_TRUE(torch::equal(back.data, in.data));
}

TEST(Resample, LinearReproducesARamp) {
  // f(x, y, z) = x + 2y + 3z is linear in the index, so trilinear sampling is exact away
  // from the edge clamping.
  const Index3 n{8, 6, 4};
  auto grid = torch::meshgrid({torch::arange(n[0]), torch::arange(n[1]), torch::arange(n[2])}, "ij");
  Volume in{(grid[0] + 2 * grid[1] + 3 * grid[2]).to(torch::kDouble), geometry(kRas, {1, 1, 1}), ""};
  const Volume out = resample(in, {0.5, 2.0 / 3.0, 0.8}, Interp::Linear);
  EXPECT_EQ(out.data.scalar_type(), at::kDouble);
  auto o = out.data.accessor<double, 3>();
  int checked = 0;
  for (int64_t x = 0; x < out.data.size(0); ++x)
    for (int64_t y = 0; y < out.data.size(1); ++y)
      for (int64_t z = 0; z < out.data.size(2); ++z) {
        const Point3 c = world_to_voxel(in.geometry, voxel_to_world(out.geometry, {double(x), double(y), double(z)}));
        bool inside = true;
        for (int i = 0; i < 3; ++i) inside = inside && c[i] >= 0 && c[i] <= n[i] - 1;
        if (!inside) continue;
        ++checked;
        EXPECT_NEAR(o[x][y][z], c[0] + 2 * c[1] + 3 * c[2], 1e-9);
      }
  EXPECT_GT(checked, 100);
}

TEST(Resample, ErrorsAndOutsideSamples) {
  const Volume labels = make_volume({4, 4, 4}, geometry(kRas), at::kLong);
  EXPECT_THROW(resample(labels, {2, 2, 2}, Interp::Linear), Error);
  EXPECT_THROW(resample(labels, {0, 2, 2}, Interp::Nearest), Error);
  EXPECT_THROW(resample_onto(labels, {4, 4, 4}, geometry({1, 0, 0, 0, 1, 0, 0, 0, 1}), Interp::Nearest),
               Error);
  // A reference grid two voxels further along x (x runs towards -L in LPS): its last two
  // x-slices lie outside the input and become 0.
  Geometry shifted = labels.geometry;
  shifted.origin[0] -= 2.0;
  const Volume out = resample_onto(labels, {4, 4, 4}, shifted, Interp::Nearest);
  EXPECT_TRUE(torch::equal(out.data.narrow(0, 0, 2), labels.data.narrow(0, 2, 2)));
  EXPECT_EQ(out.data.narrow(0, 2, 2).abs().sum().item<int64_t>(), 0);
}

TEST(WorldVoxel, RoundTripOnObliqueGeometry) {
  const Geometry g = geometry(rotation_z(37.0), {0.7, 1.3, 2.9}, {-5.5, 12.25, 101.0});
  const Point3 idx{3.25, -1.5, 7.0};
  const Point3 world = voxel_to_world(g, idx);
  const Point3 back = world_to_voxel(g, world);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(back[i], idx[i], 1e-12);
  const Point3 origin_idx = world_to_voxel(g, g.origin);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(origin_idx[i], 0.0, 1e-12);
  const Point3 ras = ras_from_lps({1, 2, 3});
  EXPECT_EQ(ras, (Point3{-1, -2, 3}));
  EXPECT_EQ(lps_from_ras(ras), (Point3{1, 2, 3}));
}

TEST(Roi, ExtractPasteInverseInsideAndAtBorders) {
  const auto full = torch::rand({2, 20, 15, 10});  // leading channel dim is carried along
  for (const Index3 centre : {Index3{10, 7, 5}, Index3{0, 14, 9}, Index3{19, 0, 3}}) {
    const Roi roi = extract_roi(full, centre, {8, 8, 8}, -1.0);
    ASSERT_EQ(roi.crop.sizes(), (at::IntArrayRef{2, 8, 8, 8}));
    EXPECT_EQ(roi.record.full_shape, (Index3{20, 15, 10}));
    int64_t inside = 1;
    const at::Tensor mask = torch::zeros_like(full);
    at::Tensor region = full, crop_region = roi.crop, covered = mask;
    for (int i = 0; i < 3; ++i) {
      const int64_t lo = std::max<int64_t>(roi.record.start[i], 0);
      const int64_t hi = std::min<int64_t>(roi.record.start[i] + 8, roi.record.full_shape[i]);
      EXPECT_EQ(roi.record.start[i], centre[i] - 4);
      region = region.narrow(i + 1, lo, hi - lo);
      covered = covered.narrow(i + 1, lo, hi - lo);
      crop_region = crop_region.narrow(i + 1, lo - roi.record.start[i], hi - lo);
      inside *= hi - lo;
    }
    EXPECT_TRUE(torch::equal(crop_region, region));
    covered.fill_(1);  // a view of `mask`: marks the box inside the grid
    // Everything outside the grid is padding.
    EXPECT_EQ((roi.crop == -1.0).sum().item<int64_t>(), 2 * (512 - inside));

    const at::Tensor pasted = paste_roi(roi.crop, roi.record);
    EXPECT_TRUE(torch::equal(pasted, full * mask));
    EXPECT_TRUE(torch::equal(paste_roi(roi.crop, roi.record, full), full));
  }
}

TEST(Roi, GeometryAndErrors) {
  const Geometry g = geometry(rotation_z(10.0));
  const RoiRecord r{{-3, 4, 5}, {8, 8, 8}, {20, 20, 20}};
  const Geometry crop = roi_geometry(g, r);
  const Point3 a = voxel_to_world(crop, {1, 2, 3});
  const Point3 b = voxel_to_world(g, {-2, 6, 8});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a[i], b[i], 1e-12);
  const auto t = torch::zeros({10, 10, 10});
  EXPECT_THROW(extract_roi(t, {10, 0, 0}), Error);
  EXPECT_THROW(extract_roi(t, {1, 1, 1}, {0, 4, 4}), Error);
  EXPECT_THROW(paste_roi(torch::zeros({4, 4, 4}), r), Error);
  EXPECT_THROW(paste_roi(torch::zeros({8, 8, 8}), r, torch::zeros({10, 10, 10})), Error);
}
