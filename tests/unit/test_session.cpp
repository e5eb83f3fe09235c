// interaction::Session without ITK: clicks one at a time equal all at once, undo gives the
// previous mask back, the three coordinate spaces agree, bad scans and clicks are refused
// without changing anything, the windows follow a mask that leaves the first one, the first
// window stays where it is for clicks well inside it, and a click prepared in the pause before
// it gives the mask it gives unprepared.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/data/geometry_ops.h"
#include "msam/interaction/session.h"

using namespace msam;
using interaction::Space;
using interaction::UserClick;

namespace {

// 90×70×40 voxels of 0.8×0.8×2 mm, a tilted direction, a bright ball at (40, 30, 20).
data::Volume scan() {
  torch::manual_seed(4);
  auto image = torch::randn({90, 70, 40}) * 20;
  const auto x = torch::arange(90).view({-1, 1, 1}), y = torch::arange(70).view({1, -1, 1}),
             z = torch::arange(40).view({1, 1, -1});
  const auto ball = ((x - 40).pow(2) + (y - 30).pow(2) + 4 * (z - 20).pow(2)) < 100;
  image.masked_fill_(ball, 300);
  data::Geometry g;
  g.spacing = {0.8, 0.8, 2.0};
  g.origin = {-30, 12, 100};
  g.direction = {0, 1, 0, -1, 0, 0, 0, 0, 1};
  return {image, g, "synthetic scan"};
}

torch::Tensor mask_of(const interaction::Session& s) { return s.mask().data; }

}  // namespace

TEST(Session, OneAtATimeEqualsAllAtOnceAndUndoRestores) {
  const std::vector<UserClick> clicks{{{40, 30, 20}, interaction::kForeground, Space::kVoxel},
                                      {{45, 28, 21}, interaction::kForeground, Space::kVoxel},
                                      {{20, 50, 10}, interaction::kBackground, Space::kVoxel}};
  interaction::Session stepwise(test::tiny_model(11), scan(), {});
  std::vector<torch::Tensor> masks;
  for (const auto& c : clicks) {
    const auto s = stepwise.add_click(c);
    masks.push_back(mask_of(stepwise));
    EXPECT_EQ(s.voxels, masks.back().sum().item<int64_t>());
  }
  interaction::Session at_once(test::tiny_model(11), scan(), {});
  at_once.add_clicks(clicks);
  EXPECT_TRUE(torch::equal(mask_of(at_once), masks.back()));

  EXPECT_EQ(stepwise.undo().clicks, 2);
  EXPECT_TRUE(torch::equal(mask_of(stepwise), masks[1]));
  EXPECT_EQ(stepwise.reset().voxels, 0);
  EXPECT_EQ(mask_of(stepwise).sum().item<int64_t>(), 0);
  EXPECT_EQ(stepwise.undo().clicks, 0);  // nothing to undo: no change
}

TEST(Session, VoxelLpsAndRasPointsAgree) {
  const auto s = scan();
  const data::Point3 voxel{40, 30, 20};
  const auto lps = data::voxel_to_world(s.geometry, voxel);
  interaction::Session a(test::tiny_model(11), s, {}), b(test::tiny_model(11), s, {}),
      c(test::tiny_model(11), s, {});
  a.add_click({voxel, interaction::kForeground, Space::kVoxel});
  b.add_click({lps, interaction::kForeground, Space::kLps});
  c.add_click({data::ras_from_lps(lps), interaction::kForeground, Space::kRas});
  EXPECT_TRUE(torch::equal(mask_of(a), mask_of(b)));
  EXPECT_TRUE(torch::equal(mask_of(a), mask_of(c)));
  // The mask is on the scan's own grid, with its geometry.
  EXPECT_EQ(a.mask().data.sizes(), s.data.sizes());
  EXPECT_EQ(a.mask().geometry.direction, s.geometry.direction);
}

TEST(Session, RefusesBadScansAndClicksWithoutChangingAnything) {
  auto bad = scan();
  bad.data[3][4][5] = NAN;
  try {
    interaction::Session s(test::tiny_model(11), bad, {});
    FAIL() << "a scan with NaN was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("synthetic scan"), std::string::npos) << e.what();
  }
  interaction::Session s(test::tiny_model(11), scan(), {});
  s.add_click({{40, 30, 20}, interaction::kForeground, Space::kVoxel});
  const auto before = mask_of(s);
  EXPECT_THROW(s.add_click({{90, 0, 0}, interaction::kForeground, Space::kVoxel}), Error);
  EXPECT_THROW(s.add_clicks({{{41, 30, 20}, interaction::kForeground, Space::kVoxel},
                             {{0, 0, -1}, interaction::kBackground, Space::kVoxel}}),
               Error);
  EXPECT_EQ(s.clicks().size(), 1u);
  EXPECT_TRUE(torch::equal(mask_of(s), before));
  EXPECT_THROW(interaction::user_click_from_json(R"({"point": [1, 2]})", "request"), Error);
  EXPECT_THROW(interaction::user_click_from_json(R"({"point": [1, 2, 3], "space": "ijk"})", "r"),
               Error);
  const auto c = interaction::user_click_from_json(R"({"point": [1, 2, 3], "label": "bg"})", "r");
  EXPECT_EQ(c.label, interaction::kBackground);
  EXPECT_EQ(c.space, Space::kVoxel);
}

TEST(Session, OnlyBackgroundClicksLeaveTheMaskEmpty) {
  interaction::Session s(test::tiny_model(11), scan(), {});
  const auto summary = s.add_click({{40, 30, 20}, interaction::kBackground, Space::kVoxel});
  EXPECT_EQ(summary.voxels, 0);
  EXPECT_TRUE(summary.windows.empty());
  EXPECT_FALSE(summary.bbox.has_value());
}

// A threshold below every logit makes the first window's mask fill it, so it touches every
// face that is not the scan's border: the session opens the neighbouring windows, up to
// max_windows, and says the lesion is not contained.
TEST(Session, WindowsFollowAMaskBeyondTheFirst) {
  interaction::SessionOptions o;
  o.threshold = -1e3;
  o.max_windows = 3;
  interaction::Session s(test::tiny_model(11), scan(), o);
  const auto summary = s.add_click({{45, 35, 20}, interaction::kForeground, Space::kVoxel});
  EXPECT_EQ(summary.windows.size(), 3u);
  EXPECT_FALSE(summary.contained);
  EXPECT_NE(summary.windows[0].center, summary.windows[1].center);
}

// The first window is placed on the first foreground click and kept for a foreground click
// well inside it (no new encoding), moved to the clicks' mean by one beyond an eighth of the
// window from its faces, and undo puts it back.
TEST(Session, FirstWindowStaysForClicksWellInsideIt) {
  interaction::Session s(test::tiny_model(11), scan(), {});
  const auto first = s.add_click({{40, 30, 20}, interaction::kForeground, Space::kVoxel});
  ASSERT_FALSE(first.windows.empty());
  const auto center = first.windows[0].center;
  const auto near = s.add_click({{44, 33, 22}, interaction::kForeground, Space::kVoxel});
  EXPECT_EQ(near.windows[0].center, center);
  // 40 voxels from the centre along the scan's first axis: beyond 64/2 - 64/8 = 24.
  const auto far = s.add_click({{80, 30, 20}, interaction::kForeground, Space::kVoxel});
  EXPECT_NE(far.windows[0].center, center);
  EXPECT_EQ(s.undo().windows[0].center, center);
}

TEST(Session, PreparedClicksGiveTheSameMask) {
  const std::vector<UserClick> clicks = {{{40, 30, 20}, interaction::kForeground, Space::kVoxel},
                                         {{47, 30, 20}, interaction::kBackground, Space::kVoxel},
                                         {{38, 26, 21}, interaction::kForeground, Space::kVoxel}};
  interaction::SessionOptions o;
  o.multi_click = true;
  interaction::Session prepared(test::tiny_model(11), scan(), o),
      plain(test::tiny_model(11), scan(), o);
  EXPECT_EQ(prepared.prepare_next_click(), 0);  // no window yet
  for (const auto& c : clicks) {
    prepared.add_click(c);
    plain.add_click(c);
    EXPECT_EQ(prepared.prepare_next_click(), 1);
    EXPECT_EQ(prepared.prepare_next_click(), 0);  // already prepared
    EXPECT_TRUE(torch::equal(mask_of(prepared), mask_of(plain)));
  }
  prepared.undo();
  plain.undo();
  prepared.prepare_next_click();
  prepared.add_click(clicks.back());
  plain.add_click(clicks.back());
  EXPECT_TRUE(torch::equal(mask_of(prepared), mask_of(plain)));
  EXPECT_TRUE(torch::equal(prepared.probabilities().data, plain.probabilities().data));
}

// A skull-stripped MR scan shared with a nonzero background (z-scored over its whole volume,
// or shifted) gives the probabilities of the scan as it was, resampled or not: the session
// subtracts the background as data::preprocess_case does, before resampling.
TEST(Session, MrScanWithANonzeroBackgroundSegmentsAsTheRawScan) {
  auto raw = scan();
  raw.data = (raw.data + 100).clamp_min(1);
  const auto x = torch::arange(90).view({-1, 1, 1}), y = torch::arange(70).view({1, -1, 1}),
             z = torch::arange(40).view({1, 1, -1});
  const auto brain = ((x - 45).pow(2) / 35.0 / 35 + (y - 35).pow(2) / 28.0 / 28 + (z - 20).pow(2) / 15.0 / 15) < 1;
  raw.data.masked_fill_(brain.logical_not(), 0);
  const std::vector<UserClick> clicks{{{40, 30, 20}, interaction::kForeground, Space::kVoxel},
                                      {{47, 30, 20}, interaction::kBackground, Space::kVoxel}};
  for (const auto& spacing : {std::optional<data::Point3>{}, std::optional<data::Point3>{data::Point3{1.5, 1.5, 1.5}}}) {
    interaction::SessionOptions o;
    o.spacing = spacing;
    interaction::Session reference(test::tiny_model(11), raw, o);
    reference.add_clicks(clicks);
    for (const auto& shared : {(raw.data - raw.data.mean()) / raw.data.std(), raw.data - 30}) {
      auto copy = raw;
      copy.data = shared;
      interaction::Session s(test::tiny_model(11), copy, o);
      s.add_clicks(clicks);
      const auto diff = (s.probabilities().data - reference.probabilities().data).abs().max().item<float>();
      EXPECT_LT(diff, 1e-4f);
    }
  }
}
