// Which parts of a window's mask a session follows into further windows: the lesion is the
// mask's part joined to a click (26-connectivity), and it continues across a face only where
// it meets it with a good part of its cross-section, never across the scan's border.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "msam/common/error.h"
#include "msam/data/components.h"
#include "msam/interaction/window_continuation.h"

using namespace msam;
using interaction::WindowFace;

namespace {

torch::Tensor ball(int64_t size, const data::Index3& c, double radius) {
  const auto x = torch::arange(size).view({-1, 1, 1}), y = torch::arange(size).view({1, -1, 1}),
             z = torch::arange(size).view({1, 1, -1});
  return ((x - c[0]).pow(2) + (y - c[1]).pow(2) + (z - c[2]).pow(2)) <= radius * radius;
}

// A 32³ window whose voxel 0 is voxel 34 of a 100³ scan (all six faces inside the scan).
data::RoiRecord inner_window() { return {{34, 34, 34}, {32, 32, 32}, {100, 100, 100}}; }

}  // namespace

TEST(ConnectedTo, KeepsTheRegionsTheSeedsAreInAndJoinsThroughCorners) {
  auto mask = ball(24, {6, 6, 6}, 4) | ball(24, {17, 17, 17}, 4);
  const auto first = data::connected_to(mask, {{6, 6, 6}});
  EXPECT_TRUE(torch::equal(first, ball(24, {6, 6, 6}, 4)));
  EXPECT_TRUE(torch::equal(data::connected_to(mask, {{6, 6, 6}, {17, 17, 17}}), mask));
  // A seed on background, or outside the grid, starts nothing.
  EXPECT_EQ(data::connected_to(mask, {{12, 0, 0}, {-1, 5, 5}, {24, 6, 6}}).sum().item<int64_t>(), 0);
  // Two voxels that share only a corner are one region.
  auto corner = torch::zeros({4, 4, 4}, torch::kBool);
  corner[1][1][1] = true;
  corner[2][2][2] = true;
  EXPECT_EQ(data::connected_to(corner, {{1, 1, 1}}).sum().item<int64_t>(), 2);
  EXPECT_THROW(data::connected_to(torch::zeros({4, 4}, torch::kBool), {}), Error);
}

TEST(WindowContinuation, FollowsALesionCutByAFaceAndNothingElse) {
  const auto roi = inner_window();
  // Inside the window: nowhere to go.
  EXPECT_TRUE(interaction::continuation_faces(ball(32, {16, 16, 16}, 8), roi).empty());
  // A rod along x through the whole window: its cross-section is the same on every plane.
  auto rod = torch::zeros({32, 32, 32}, torch::kBool);
  rod.slice(1, 12, 20).slice(2, 12, 20).fill_(true);
  EXPECT_EQ(interaction::continuation_faces(rod, roi),
            (std::vector<WindowFace>{{0, 0}, {0, 1}}));
  // A ball cut by the high y face through its middle continues there.
  EXPECT_EQ(interaction::continuation_faces(ball(32, {16, 28, 16}, 9), roi),
            (std::vector<WindowFace>{{1, 1}}));
  // A ball whose thin spur (one voxel wide) reaches the high z face: not followed, nor its
  // tapering edge grazing the low x face.
  auto spur = ball(32, {16, 16, 14}, 8);
  spur.select(0, 16).select(0, 16).slice(0, 14, 32).fill_(true);
  EXPECT_TRUE(interaction::continuation_faces(spur, roi).empty());
  EXPECT_TRUE(interaction::continuation_faces(ball(32, {8, 16, 16}, 8), roi).empty());
  // Where the window's face is the scan's border, the lesion ends there.
  data::RoiRecord at_border = roi;
  at_border.start[0] = 0;
  EXPECT_EQ(interaction::continuation_faces(rod, at_border), (std::vector<WindowFace>{{0, 1}}));
  at_border.start[0] = 100 - 32;
  EXPECT_EQ(interaction::continuation_faces(rod, at_border), (std::vector<WindowFace>{{0, 0}}));
  // No lesion, no faces.
  EXPECT_TRUE(interaction::continuation_faces(torch::zeros({32, 32, 32}, torch::kBool), roi).empty());
}
