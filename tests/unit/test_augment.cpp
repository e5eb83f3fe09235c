// Training augmentation: draws bounded, seeded and independent per kind; the geometric and
// intensity changes do what they say on known volumes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "msam/data/augment.h"

using namespace msam::data;

namespace {

// A ball of `radius` mm at the centre of a patch of `shape` voxels of `spacing` mm.
at::Tensor ball(at::IntArrayRef shape, const std::array<double, 3>& spacing, double radius) {
  std::vector<at::Tensor> axes;
  for (int d = 0; d < 3; ++d)
    axes.push_back((at::arange(shape[d], at::kDouble) + 0.5 - 0.5 * static_cast<double>(shape[d])) * spacing[d]);
  const auto g = at::meshgrid(axes, "ij");
  return (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).le(radius * radius).to(at::kByte);
}

}  // namespace

TEST(Augment, NothingDrawnChangesNothing) {
  const auto a = sample_augmentation(AugmentOptions{}, 3, 2, 1);
  EXPECT_FALSE(a.spatial());
  EXPECT_EQ(a.gamma, 1.0);
  auto image = at::randn({6, 7, 8});
  auto label = at::randint(0, 2, {6, 7, 8}).to(at::kByte);
  const auto i0 = image, l0 = label;
  apply_augmentation(a, {1, 1, 1}, image, label);
  EXPECT_TRUE(image.is_same(i0));
  EXPECT_TRUE(label.is_same(l0));
}

TEST(Augment, DrawsAreBoundedCoverTheirRangeAndKeepTheOtherKinds) {
  AugmentOptions o;
  o.rotation_degrees = 30;
  o.zoom = 0.2;
  o.gamma = 0.5;
  double max_angle = 0, min_zoom = 2, max_zoom = 0, min_gamma = 2, max_gamma = 0;
  for (size_t p = 0; p < 300; ++p) {
    const auto a = sample_augmentation(o, 9, 4, p);
    for (double angle : a.angles) {
      EXPECT_LE(std::abs(angle), 30 * M_PI / 180 + 1e-12);
      max_angle = std::max(max_angle, std::abs(angle));
    }
    min_zoom = std::min(min_zoom, a.zoom);
    max_zoom = std::max(max_zoom, a.zoom);
    min_gamma = std::min(min_gamma, a.gamma);
    max_gamma = std::max(max_gamma, a.gamma);
  }
  EXPECT_GT(max_angle, 28 * M_PI / 180);
  EXPECT_GE(min_zoom, 0.8);
  EXPECT_LE(max_zoom, 1.2);
  EXPECT_LT(min_zoom, 0.82);
  EXPECT_GT(max_zoom, 1.18);
  EXPECT_GE(min_gamma, 1 / 1.5 - 1e-12);
  EXPECT_LE(max_gamma, 1.5 + 1e-12);
  EXPECT_LT(min_gamma, 0.7);
  EXPECT_GT(max_gamma, 1.4);
  // Seeded, and each kind its own draw: the flips and intensities of a run stay as they were
  // when rotation, zoom, gamma and distractors are turned on.
  AugmentOptions base;
  base.random_flips = true;
  base.intensity_scale = 0.1;
  base.intensity_shift = 0.1;
  AugmentOptions all = base;
  all.rotation_degrees = 30;
  all.zoom = 0.2;
  all.gamma = 0.5;
  all.distractor = 0.25;
  all.elastic = 6;
  for (size_t p = 0; p < 20; ++p) {
    const auto a = sample_augmentation(base, 1, 7, p), b = sample_augmentation(all, 1, 7, p);
    EXPECT_EQ(a.flips, b.flips);
    EXPECT_EQ(a.scale, b.scale);
    EXPECT_EQ(a.shift, b.shift);
    const auto c = sample_augmentation(all, 1, 7, p);
    EXPECT_EQ(b.angles, c.angles);
    EXPECT_EQ(b.zoom, c.zoom);
    EXPECT_EQ(b.gamma, c.gamma);
    EXPECT_EQ(a.elastic.magnitude, 0);
    EXPECT_GT(b.elastic.magnitude, 0);
    EXPECT_LE(b.elastic.magnitude, 6);
    EXPECT_EQ(b.elastic.spacing, 24);
    EXPECT_EQ(b.elastic.seed, c.elastic.seed);
  }
  EXPECT_NE(sample_augmentation(all, 1, 7, 0).elastic.seed, sample_augmentation(all, 1, 7, 1).elastic.seed);
  EXPECT_NE(sample_augmentation(all, 1, 7, 0).angles, sample_augmentation(all, 1, 7, 1).angles);
  EXPECT_NE(sample_augmentation(all, 1, 8, 0).zoom, sample_augmentation(all, 1, 7, 0).zoom);
  int distractors = 0;
  for (size_t p = 0; p < 400; ++p) {
    EXPECT_FALSE(sample_augmentation(base, 1, 7, p).distractor);
    const auto d = sample_augmentation(all, 1, 7, p).distractor;
    if (!d) continue;
    ++distractors;
    EXPECT_EQ(d->gap_mm, all.distractor_gap);
  }
  EXPECT_GT(distractors, 70);
  EXPECT_LT(distractors, 130);
}

TEST(Augment, QuarterTurnMovesVoxelsOntoVoxels) {
  // About z by 90°: x → y, so output (i, j) reads input (j, n − 1 − i), image and label alike.
  auto image = at::randn({8, 8, 5});
  auto label = image.gt(0.5).to(at::kByte);
  const auto expected_image = image.flip({1}).transpose(0, 1);
  const auto expected_label = label.flip({1}).transpose(0, 1);
  Augmentation a;
  a.angles = {0, 0, M_PI / 2};
  apply_augmentation(a, {1.2, 1.2, 2.0}, image, label);
  EXPECT_TRUE(at::allclose(image, expected_image, 1e-4, 1e-4));
  EXPECT_TRUE(at::equal(label, expected_label));
}

TEST(Augment, RotationIsInMillimetresAndZoomScalesVolume) {
  // Anisotropic voxels: a ball in millimetres stays a ball of the same volume under any
  // rotation (rotating voxel indices would make it an ellipsoid); a zoom by f scales it by f³.
  const std::array<double, 3> spacing{1.0, 1.0, 2.5};
  const std::vector<int64_t> shape{40, 40, 16};
  const auto sphere = ball(shape, spacing, 12.0);
  const double n0 = sphere.sum().item<double>();
  auto image = sphere.to(at::kFloat);
  auto label = sphere.clone();
  Augmentation a;
  a.angles = {0.7, -0.4, 0.3};
  apply_augmentation(a, spacing, image, label);
  EXPECT_NEAR(label.sum().item<double>() / n0, 1.0, 0.05);
  // The voxels that changed lie on the ball's surface (partial-volume at 2.5 mm), none inside.
  EXPECT_TRUE(at::equal(label.mul(ball(shape, spacing, 9.0)), ball(shape, spacing, 9.0)));
  EXPECT_EQ(label.mul(1 - ball(shape, spacing, 15.0)).sum().item<int64_t>(), 0);

  auto zoomed_image = sphere.to(at::kFloat);
  auto zoomed = sphere.clone();
  Augmentation z;
  z.zoom = 1.2;
  apply_augmentation(z, spacing, zoomed_image, zoomed);
  EXPECT_NEAR(zoomed.sum().item<double>() / n0, 1.2 * 1.2 * 1.2, 0.1);
  EXPECT_EQ(zoomed.scalar_type(), at::kByte);
}

TEST(Augment, ElasticFieldIsBoundedSmoothAndSeeded) {
  // Images that are each voxel's millimetre coordinate along one axis: after the deformation
  // alone, image − coordinate is the displacement along that axis. A field of magnitude 5 mm
  // moves no voxel further along any axis, moves some by a good part of it, and neighbours
  // alike: a step of one voxel changes it by less than half the step (control points 24 mm
  // apart; no folding).
  const std::array<double, 3> spacing{1.5, 1.5, 2.0};
  const std::vector<int64_t> shape{40, 40, 24};
  Augmentation a;
  a.elastic = {5.0, 24.0, 11};
  EXPECT_TRUE(a.spatial());
  const auto inner = at::indexing::Slice(6, -6);
  for (int d = 0; d < 3; ++d) {
    const auto axis = static_cast<size_t>(d);
    std::vector<int64_t> view{1, 1, 1};
    view[axis] = shape[axis];
    const auto coordinate = (at::arange(shape[axis], at::kFloat) * spacing[axis]).view(view).expand(shape).contiguous();
    auto image = coordinate.clone();
    auto label = at::zeros(shape, at::kByte);
    apply_augmentation(a, spacing, image, label);
    // Away from the faces, where the edge values clamp the coordinate.
    const auto moved = (image - coordinate).index({inner, inner, inner});
    EXPECT_LE(moved.abs().max().item<double>(), 5.0 + 1e-3) << "axis " << d;
    EXPECT_GT(moved.abs().max().item<double>(), 2.0) << "axis " << d;
    const auto step = moved.narrow(d, 1, moved.size(d) - 1) - moved.narrow(d, 0, moved.size(d) - 1);
    EXPECT_LT(step.abs().max().item<double>(), 0.5 * spacing[axis] + 1e-3) << "axis " << d;
    auto again = coordinate.clone();
    auto again_label = at::zeros(shape, at::kByte);
    apply_augmentation(a, spacing, again, again_label);
    EXPECT_TRUE(at::equal(image, again));
  }
  // A ball keeps its place (no voxel moves more than 5·√3 mm) and changes its shape; another
  // seed changes it otherwise.
  const auto sphere = ball(shape, spacing, 12.0);
  auto image = sphere.to(at::kFloat), label = sphere.clone();
  apply_augmentation(a, spacing, image, label);
  EXPECT_TRUE(at::equal(label.mul(ball(shape, spacing, 3.0)), ball(shape, spacing, 3.0)));
  EXPECT_EQ(label.mul(1 - ball(shape, spacing, 21.0)).sum().item<int64_t>(), 0);
  EXPECT_FALSE(at::equal(label, sphere));
  auto other_image = sphere.to(at::kFloat), other = sphere.clone();
  Augmentation b = a;
  b.elastic.seed = 12;
  apply_augmentation(b, spacing, other_image, other);
  EXPECT_FALSE(at::equal(label, other));
}

TEST(Augment, GammaKeepsTheRangeAndTheOrder) {
  auto image = at::randn({10, 10, 10});
  auto label = at::zeros({10, 10, 10}, at::kByte);
  const auto before = image.clone();
  Augmentation a;
  a.gamma = 1.4;
  apply_augmentation(a, {1, 1, 1}, image, label);
  EXPECT_NEAR(image.min().item<float>(), before.min().item<float>(), 1e-5);
  EXPECT_NEAR(image.max().item<float>(), before.max().item<float>(), 1e-5);
  // In the input's order the output never decreases (the curve may round neighbours to one
  // value, so the argsorts themselves can differ where it makes ties).
  const auto in_order = image.flatten().index_select(0, before.flatten().argsort());
  EXPECT_TRUE(in_order.slice(0, 1).ge(in_order.slice(0, 0, -1)).all().item<bool>());
  EXPECT_LT(image.mean().item<float>(), before.mean().item<float>());  // γ > 1 darkens the middle
}

TEST(Augment, BiasFieldIsSmoothMultipliesAboveTheBackgroundAndIsDrawnInItsRange) {
  // 19 monomials of degree 1–3, none repeated.
  const auto& monomials = bias_field_monomials();
  ASSERT_EQ(monomials.size(), 19u);
  for (size_t m = 0; m < monomials.size(); ++m) {
    const int degree = monomials[m][0] + monomials[m][1] + monomials[m][2];
    EXPECT_GE(degree, 1);
    EXPECT_LE(degree, 3);
    for (size_t n = 0; n < m; ++n) EXPECT_NE(monomials[m], monomials[n]);
  }
  // Drawn: 19 coefficients in ± bias_field, covering the range; none when off; its own draw.
  AugmentOptions o;
  o.bias_field = 0.3;
  o.intensity_scale = 0.1;
  double lo = 1, hi = -1;
  for (size_t p = 0; p < 50; ++p) {
    const auto a = sample_augmentation(o, 5, 2, p);
    ASSERT_EQ(a.bias_field.size(), 19u);
    for (double c : a.bias_field) {
      EXPECT_LE(std::abs(c), 0.3);
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
    AugmentOptions off = o;
    off.bias_field = 0;
    const auto b = sample_augmentation(off, 5, 2, p);
    EXPECT_TRUE(b.bias_field.empty());
    EXPECT_EQ(a.scale, b.scale);
  }
  EXPECT_LT(lo, -0.28);
  EXPECT_GT(hi, 0.28);
  // Applied: a background of −2 stays; above it the image is multiplied by exp(p) at each
  // voxel's coordinates in [−1, 1]; here p = 0.5 u − 0.25 v w² (monomials (1,0,0), (0,1,2)).
  Augmentation a;
  a.bias_field.assign(19, 0.0);
  for (size_t m = 0; m < monomials.size(); ++m) {
    if (monomials[m] == std::array<int, 3>{1, 0, 0}) a.bias_field[m] = 0.5;
    if (monomials[m] == std::array<int, 3>{0, 1, 2}) a.bias_field[m] = -0.25;
  }
  auto image = at::full({5, 9, 3}, 1.0f);
  image.select(0, 0).fill_(-2.0f);  // the x = −1 face: background
  auto label = at::zeros({5, 9, 3}, at::kByte);
  apply_augmentation(a, {1, 1, 1}, image, label);
  EXPECT_TRUE(image.select(0, 0).eq(-2.0f).all().item<bool>());
  for (int64_t x = 1; x < 5; ++x)
    for (int64_t y = 0; y < 9; ++y)
      for (int64_t z = 0; z < 3; ++z) {
        const double u = -1 + 2.0 * x / 4, v = -1 + 2.0 * y / 8, w = -1 + 2.0 * z / 2;
        const double expected = -2 + 3 * std::exp(0.5 * u - 0.25 * v * w * w);
        EXPECT_NEAR(image[x][y][z].item<float>(), expected, 1e-5) << x << " " << y << " " << z;
      }
  EXPECT_TRUE(label.eq(0).all().item<bool>());
}

TEST(Augment, DistractorCopiesLesionTissueAwayFromTheLesion) {
  // A 48³ patch at 1.5 mm: a body (0) inside two voxels of outside (−3), a 12 mm lesion at
  // the centre whose values (2 + a ramp) tell where a copy came from.
  const std::array<double, 3> spacing{1.5, 1.5, 1.5};
  const auto label = ball({48, 48, 48}, spacing, 12);
  auto body = at::full({48, 48, 48}, -3.0f);
  body.slice(0, 2, 46).slice(1, 2, 46).slice(2, 2, 46).fill_(0);
  const auto lesion_values = 2 + 0.01 * at::arange(48 * 48 * 48, at::kFloat).reshape({48, 48, 48}) / (48 * 48);
  const auto original = at::where(label.to(at::kBool), lesion_values, body);
  // The copy, its blended rim included, keeps 4.5 mm from the lesion.
  const auto near_lesion = ball({48, 48, 48}, spacing, 12 + 4.5).to(at::kBool);
  int placed = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    Augmentation a;
    a.distractor = Augmentation::Distractor{seed};
    auto image = original.clone();
    auto l = label.clone();
    apply_augmentation(a, spacing, image, l);
    EXPECT_TRUE(l.equal(label));
    const auto changed = image.ne(original);
    if (!changed.any().item<bool>()) continue;
    ++placed;
    EXPECT_FALSE(changed.logical_and(near_lesion).any().item<bool>()) << seed;
    // The copy's core holds lesion values (its texture, shrunk); its rim blends into the tissue.
    const auto copied = image.masked_select(changed);
    EXPECT_GE(copied.max().item<float>(), 2.0f) << seed;
    EXPECT_LE(copied.max().item<float>(), 2.48f) << seed;
    EXPECT_GE(changed.sum().item<int64_t>(), 20) << seed;
    EXPECT_LE(changed.logical_and(body.eq(-3)).sum().item<int64_t>(), changed.sum().item<int64_t>() / 5) << seed;
    // Seeded: the same draw places the same copy.
    auto again = original.clone();
    auto l2 = label.clone();
    apply_augmentation(a, spacing, again, l2);
    EXPECT_TRUE(again.equal(image));
  }
  EXPECT_GE(placed, 6);
  // With no gap the copy may touch the lesion but never covers it.
  int near = 0;
  for (uint64_t seed = 1; seed <= 16; ++seed) {
    Augmentation a;
    a.distractor = Augmentation::Distractor{seed, 0};
    auto image = original.clone();
    auto l = label.clone();
    apply_augmentation(a, spacing, image, l);
    const auto changed = image.ne(original);
    EXPECT_FALSE(changed.logical_and(label.to(at::kBool)).any().item<bool>()) << seed;
    near += changed.logical_and(near_lesion).any().item<bool>() ? 1 : 0;
  }
  EXPECT_GE(near, 1);
  // A lesion that leaves no room 4.5 mm away from it: no distractor, nothing changed.
  const auto everywhere = at::ones({20, 20, 20}, at::kByte);
  auto image = at::randn({20, 20, 20});
  const auto before = image.clone();
  auto l = everywhere.clone();
  Augmentation a;
  a.distractor = Augmentation::Distractor{3};
  apply_augmentation(a, spacing, image, l);
  EXPECT_TRUE(image.equal(before));
}

TEST(Augment, FlipAndIntensityDrawsArePinned) {
  // Recorded values: a change here changes the augmentation of every training run, so runs
  // made before would no longer repeat digit for digit.
  const std::vector<std::tuple<int64_t, size_t, std::array<bool, 3>>> flips = {
      {0, 0, {true, false, true}},  {1, 0, {true, true, false}},   {3, 5, {true, false, false}},
      {159, 6, {true, false, false}}, {7, 2, {false, true, false}}, {42, 1, {true, true, false}}};
  for (const auto& [epoch, position, expected] : flips)
    EXPECT_EQ(sample_flips(0, epoch, position), expected) << epoch << " " << position;
  AugmentOptions o;
  o.intensity_scale = 1;
  o.intensity_shift = 1;
  const auto a = sample_augmentation(o, 0, 3, 5);
  EXPECT_DOUBLE_EQ(a.scale, 1 - 0.72885215694293226);
  EXPECT_DOUBLE_EQ(a.shift, 0.96844858890210328);
}
