#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <vector>

#include "msam/common/error.h"
#include "msam/interaction/click_sampler.h"

using namespace msam;
using namespace msam::interaction;

namespace {

// A B×1×16³ target with a box lesion per sample and logits that get part of it wrong.
struct Case {
  torch::Tensor target, logits;
};

Case make_case() {
  auto target = torch::zeros({3, 1, 16, 16, 16});
  target[0].slice(1, 2, 9).slice(2, 3, 11).slice(3, 4, 12) = 1;
  target[1].slice(1, 5, 15).slice(2, 5, 15).slice(3, 1, 6) = 1;
  target[2].slice(1, 0, 4).slice(2, 0, 4).slice(3, 0, 4) = 1;
  auto logits = torch::full({3, 1, 16, 16, 16}, -3.0);
  logits[0].slice(1, 4, 12).slice(2, 3, 11).slice(3, 4, 12) = 2.0;  // FN and FP
  logits[1].slice(1, 5, 15).slice(2, 5, 15).slice(3, 1, 6) = 2.0;   // no error
  logits[1][0][0][0][0] = 2.0;                                       // one FP voxel
  logits[2].slice(1, 0, 4).slice(2, 0, 4).slice(3, 0, 2) = 2.0;     // FN only
  return {target, logits};
}

at::Tensor at_points(const at::Tensor& volume, const at::Tensor& points) {
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < volume.size(0); ++b) {
    auto p = points[b][0];
    out.push_back(volume[b][0][p[0].item<int64_t>()][p[1].item<int64_t>()][p[2].item<int64_t>()]);
  }
  return torch::stack(out);
}

}  // namespace

TEST(ClickSampler, ClicksLieInTheErrorRegionWithTheRightLabel) {
  const auto c = make_case();
  const auto errors = error_regions(c.logits, c.target);
  const auto error = errors.false_negative.logical_or(errors.false_positive);
  for (auto protocol : {ClickProtocol::kRandom, ClickProtocol::kFnFp5050, ClickProtocol::kCenter})
    for (int seed = 0; seed < 40; ++seed) {
      SCOPED_TRACE(std::string(name(protocol)) + " seed " + std::to_string(seed));
      auto gen = at::detail::createCPUGenerator(seed);
      const auto clicks = sample_clicks(c.logits, c.target, protocol, gen);
      ASSERT_EQ(clicks.points.sizes(), (std::vector<int64_t>{3, 1, 3}));
      ASSERT_EQ(clicks.labels.sizes(), (std::vector<int64_t>{3, 1}));
      ASSERT_EQ(clicks.points.scalar_type(), torch::kLong);
      ASSERT_EQ(clicks.labels.scalar_type(), torch::kLong);
      EXPECT_TRUE(at_points(error, clicks.points).all().item<bool>());
      EXPECT_TRUE(torch::equal(at_points(errors.false_negative, clicks.points).to(torch::kLong),
                               clicks.labels.squeeze(1)));
    }
}

TEST(ClickSampler, FirstClickIsInTheForeground) {
  const auto c = make_case();
  const auto zeros = torch::zeros_like(c.logits);
  for (auto protocol : {ClickProtocol::kRandom, ClickProtocol::kFnFp5050, ClickProtocol::kCenter})
    for (int seed = 0; seed < 20; ++seed) {
      auto gen = at::detail::createCPUGenerator(seed);
      const auto clicks = sample_clicks(zeros, c.target, protocol, gen);
      EXPECT_TRUE((at_points(c.target, clicks.points) > 0).all().item<bool>());
      EXPECT_TRUE(clicks.labels.eq(1).all().item<bool>());
    }
}

TEST(ClickSampler, RandomClicksCoverTheWholeErrorRegion) {
  // Uniform over FN ∪ FP: both FN and FP voxels of sample 0 get picked, in proportion.
  const auto c = make_case();
  auto gen = at::detail::createCPUGenerator(7);
  int positives = 0;
  const int n = 400;
  for (int i = 0; i < n; ++i)
    positives += sample_clicks(c.logits, c.target, ClickProtocol::kRandom, gen)
                     .labels[0][0]
                     .item<int64_t>();
  // Sample 0: FN = 2·8·8 = 128 voxels, FP = 3·8·8 = 192 voxels → P(label 1) = 0.4.
  EXPECT_GT(positives, 0.3 * n);
  EXPECT_LT(positives, 0.5 * n);
}

TEST(ClickSampler, FnFpChoiceIsFiftyFifty) {
  const auto c = make_case();
  auto gen = at::detail::createCPUGenerator(11);
  int positives = 0;
  const int n = 400;
  for (int i = 0; i < n; ++i) {
    const auto clicks = sample_clicks(c.logits, c.target, ClickProtocol::kFnFp5050, gen);
    positives += clicks.labels[0][0].item<int64_t>();
    EXPECT_EQ(clicks.labels[2][0].item<int64_t>(), 1);  // only FN there: the fallback
  }
  EXPECT_GT(positives, 0.4 * n);
  EXPECT_LT(positives, 0.6 * n);
}

TEST(ClickSampler, SameSeedSameClicks) {
  const auto c = make_case();
  for (auto protocol : {ClickProtocol::kRandom, ClickProtocol::kFnFp5050, ClickProtocol::kCenter}) {
    auto a = at::detail::createCPUGenerator(42);
    auto b = at::detail::createCPUGenerator(42);
    for (int i = 0; i < 5; ++i) {
      const auto x = sample_clicks(c.logits, c.target, protocol, a);
      const auto y = sample_clicks(c.logits, c.target, protocol, b);
      EXPECT_TRUE(torch::equal(x.points, y.points));
      EXPECT_TRUE(torch::equal(x.labels, y.labels));
    }
  }
  auto a = at::detail::createCPUGenerator(1);
  auto b = at::detail::createCPUGenerator(2);
  bool differ = false;
  for (int i = 0; i < 5 && !differ; ++i)
    differ = !torch::equal(sample_clicks(c.logits, c.target, ClickProtocol::kRandom, a).points,
                           sample_clicks(c.logits, c.target, ClickProtocol::kRandom, b).points);
  EXPECT_TRUE(differ);
}

TEST(ClickSampler, ThresholdIsOnLogitsAtHalf) {
  // Logit 0.3 (sigmoid 0.57) is "not predicted" under the reference rule: a FN voxel.
  auto target = torch::zeros({1, 1, 4, 4, 4});
  target[0][0][1][2][3] = 1;
  auto logits = torch::full({1, 1, 4, 4, 4}, -5.0);
  logits[0][0][1][2][3] = 0.3;
  auto gen = at::detail::createCPUGenerator(0);
  auto clicks = sample_clicks(logits, target, ClickProtocol::kRandom, gen);
  EXPECT_TRUE(torch::equal(clicks.points[0][0], torch::tensor({1, 2, 3}, torch::kLong)));
  EXPECT_EQ(clicks.labels.item<int64_t>(), 1);
  // Above 0.5 it is predicted; with no error the click is still the foreground voxel.
  logits[0][0][1][2][3] = 0.7;
  EXPECT_FALSE(error_regions(logits, target).false_negative.any().item<bool>());
  // A custom threshold (sigmoid 0.5 = logit 0) is available.
  logits[0][0][1][2][3] = 0.3;
  EXPECT_FALSE(error_regions(logits, target, 0.0).false_negative.any().item<bool>());
  // Logit 0.3 on a background voxel is not a FP under the reference rule.
  logits[0][0][0][0][0] = 0.3;
  EXPECT_FALSE(error_regions(logits, target).false_positive.any().item<bool>());
}

TEST(ClickSampler, NoErrorAndNoForegroundFallbacks) {
  auto target = torch::zeros({2, 1, 6, 6, 6});
  target[0].slice(1, 1, 3).slice(2, 1, 3).slice(3, 1, 3) = 1;
  auto logits = torch::where(target > 0, torch::full_like(target, 3.0), torch::full_like(target, -3.0));
  for (int seed = 0; seed < 10; ++seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    const auto clicks = sample_clicks(logits, target, ClickProtocol::kCenter, gen);
    EXPECT_EQ(at_points(target, clicks.points)[0].item<float>(), 1.f);
    EXPECT_EQ(clicks.labels[0][0].item<int64_t>(), 1);
    EXPECT_EQ(clicks.labels[1][0].item<int64_t>(), 0);  // empty target and prediction
  }
}

TEST(ClickSampler, CenterPicksTheInteriorOfABoxError) {
  // A 5×9×9 FN box: the farthest voxels from its boundary are the middle slab d = 2+2,
  // h, w in 4..8 (distance 3); the click is among them.
  auto target = torch::zeros({1, 1, 12, 16, 16});
  target[0].slice(1, 2, 7).slice(2, 2, 11).slice(3, 2, 11) = 1;
  const auto distance = boundary_distance(target > 0);
  EXPECT_EQ(distance.max().item<float>(), 3.f);
  EXPECT_EQ(distance[0][0][4][6][6].item<float>(), 3.f);
  EXPECT_EQ(distance[0][0][2][6][6].item<float>(), 1.f);
  EXPECT_EQ(distance[0][0][3][6][6].item<float>(), 2.f);
  for (int seed = 0; seed < 20; ++seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    const auto p = sample_clicks(torch::zeros_like(target), target, ClickProtocol::kCenter, gen)
                       .points[0][0];
    EXPECT_EQ(p[0].item<int64_t>(), 4);
    EXPECT_GE(p[1].item<int64_t>(), 4);
    EXPECT_LE(p[1].item<int64_t>(), 8);
    EXPECT_GE(p[2].item<int64_t>(), 4);
    EXPECT_LE(p[2].item<int64_t>(), 8);
  }
  // The volume border is a boundary too; FN and FP touching each other are separate regions.
  auto t = torch::zeros({1, 1, 8, 8, 8});
  t[0].slice(1, 0, 4) = 1;                   // FN half
  auto l = torch::full({1, 1, 8, 8, 8}, -1.0);
  l[0].slice(1, 4, 8) = 1.0;                 // FP half
  const auto e = error_regions(l, t);
  EXPECT_EQ(boundary_distance(e.false_negative).max().item<float>(), 2.f);
  auto gen = at::detail::createCPUGenerator(3);
  const auto p = sample_clicks(l, t, ClickProtocol::kCenter, gen).points[0][0];
  EXPECT_TRUE(p[0].item<int64_t>() == 1 || p[0].item<int64_t>() == 2 ||
              p[0].item<int64_t>() == 5 || p[0].item<int64_t>() == 6);
}

// The octagonal distance by plain loops: erode (6-neighbourhood first, then 26, alternating)
// until nothing is left; a voxel's distance is the number of erosions it survived plus one.
std::vector<float> eroded_distance(const std::vector<uint8_t>& region, int64_t D, int64_t H, int64_t W) {
  std::vector<uint8_t> inside = region, next(region.size());
  std::vector<float> distance(region.size(), 0.f);
  auto at = [&](int64_t d, int64_t h, int64_t w) {
    return d >= 0 && h >= 0 && w >= 0 && d < D && h < H && w < W && inside[(d * H + h) * W + w];
  };
  for (bool cube = false, any = true; any; cube = !cube) {
    any = false;
    for (int64_t d = 0; d < D; ++d)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          const int64_t i = (d * H + h) * W + w;
          distance[i] += inside[i];
          bool keep = inside[i];
          for (int a = -1; a <= 1 && keep; ++a)
            for (int b = -1; b <= 1 && keep; ++b)
              for (int c = -1; c <= 1 && keep; ++c)
                if (cube || std::abs(a) + std::abs(b) + std::abs(c) == 1) keep = at(d + a, h + b, w + c);
          next[i] = keep;
          any = any || keep;
        }
    std::swap(inside, next);
  }
  return distance;
}

TEST(ClickSampler, BoundaryDistanceMatchesPlainErosion) {
  // Random blobs away from and touching the volume border, two samples of different extent.
  const int64_t D = 11, H = 13, W = 9;
  auto gen = at::detail::createCPUGenerator(5);
  auto noise = torch::rand({2, 1, D, H, W}, gen);
  auto region = torch::avg_pool3d(noise, 3, 1, 1) > 0.5;
  region[1].slice(1, 0, 6).slice(2, 0, 5) = false;  // the second sample's blob in one corner only
  region[0][0][0][0][0] = true;
  const auto distance = boundary_distance(region);
  for (int64_t b = 0; b < 2; ++b) {
    const auto r = region[b][0].contiguous().to(torch::kByte);
    const auto expected = eroded_distance(
        std::vector<uint8_t>(r.data_ptr<uint8_t>(), r.data_ptr<uint8_t>() + r.numel()), D, H, W);
    const auto got = distance[b][0].contiguous();
    EXPECT_TRUE(torch::equal(got, torch::tensor(expected).view({D, H, W}))) << "sample " << b;
  }
  EXPECT_EQ(boundary_distance(torch::zeros({1, 1, 4, 4, 4}, torch::kBool)).sum().item<float>(), 0.f);
}

TEST(ClickSampler, AppendClicksForMultiClickMode) {
  const auto c = make_case();
  auto gen = at::detail::createCPUGenerator(5);
  Clicks history;
  for (int i = 1; i <= 3; ++i) {
    const auto next = sample_clicks(c.logits, c.target, ClickProtocol::kRandom, gen);
    history = append_clicks(history, next);
    ASSERT_EQ(history.points.sizes(), (std::vector<int64_t>{3, i, 3}));
    ASSERT_EQ(history.labels.sizes(), (std::vector<int64_t>{3, i}));
    EXPECT_TRUE(torch::equal(history.points.select(1, i - 1), next.points.select(1, 0)));
  }
}

TEST(ClickSampler, ShapeMismatchIsAnError) {
  auto gen = at::detail::createCPUGenerator(0);
  EXPECT_THROW(sample_clicks(torch::zeros({1, 1, 4, 4, 4}), torch::zeros({1, 1, 4, 4, 5}),
                             ClickProtocol::kRandom, gen),
               Error);
  EXPECT_THROW(sample_clicks(torch::zeros({1, 4, 4, 4}), torch::zeros({1, 4, 4, 4}),
                             ClickProtocol::kRandom, gen),
               Error);
}

// Data parallelism: ranks holding parts of a batch place exactly the whole batch's clicks, and
// their generators stay in step for the next draw.
TEST(ClickSampler, SharesOfABatchPlaceTheWholeBatchsClicks) {
  const auto c = make_case();
  for (auto protocol : {ClickProtocol::kRandom, ClickProtocol::kFnFp5050, ClickProtocol::kCenter}) {
    auto whole_gen = at::make_generator<at::CPUGeneratorImpl>(42);
    auto first_gen = at::make_generator<at::CPUGeneratorImpl>(42);
    auto rest_gen = at::make_generator<at::CPUGeneratorImpl>(42);
    for (int round = 0; round < 2; ++round) {
      const auto whole = sample_clicks(c.logits, c.target, protocol, whole_gen, 0.5);
      const auto first = sample_clicks(c.logits.slice(0, 0, 1), c.target.slice(0, 0, 1), protocol,
                                       first_gen, 0.5, {0, 3});
      const auto rest = sample_clicks(c.logits.slice(0, 1, 3), c.target.slice(0, 1, 3), protocol,
                                      rest_gen, 0.5, {1, 3});
      EXPECT_TRUE(torch::equal(whole.points, torch::cat({first.points, rest.points})))
          << name(protocol) << " round " << round;
      EXPECT_TRUE(torch::equal(whole.labels, torch::cat({first.labels, rest.labels})))
          << name(protocol) << " round " << round;
    }
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  EXPECT_THROW(sample_clicks(c.logits, c.target, ClickProtocol::kRandom, gen, 0.5, {1, 3}),
               Error);
}

// Training draws a step's clicks up front (one transfer, and a captured step reads them from a
// buffer): the same clicks as drawing each click's when it is placed, for a share too.
TEST(ClickSampler, DrawsMadeUpFrontPlaceTheSameClicks) {
  const auto c = make_case();
  for (auto protocol : {ClickProtocol::kRandom, ClickProtocol::kFnFp5050, ClickProtocol::kCenter}) {
    auto lazy_gen = at::make_generator<at::CPUGeneratorImpl>(42);
    auto ahead_gen = at::make_generator<at::CPUGeneratorImpl>(42);
    auto share_gen = at::make_generator<at::CPUGeneratorImpl>(42);
    const auto ahead = draw_click_uniforms(4, 3, protocol, ahead_gen, torch::kCPU, {});
    ASSERT_EQ(ahead.sizes(), (std::vector<int64_t>{4, draws_per_click(protocol), 3}));
    const auto rest = draw_click_uniforms(4, 2, protocol, share_gen, torch::kCPU, {1, 3});
    for (int64_t i = 0; i < 4; ++i) {
      // A different previous prediction at each click, as in the loop.
      const auto logits = c.logits.roll({i}, {2});
      const auto x = sample_clicks(logits, c.target, protocol, lazy_gen, 0.5);
      const auto y = sample_clicks(logits, c.target, protocol, ahead[i], 0.5);
      const auto z = sample_clicks(logits.slice(0, 1, 3), c.target.slice(0, 1, 3), protocol,
                                   rest[i], 0.5);
      EXPECT_TRUE(torch::equal(x.points, y.points)) << name(protocol) << " click " << i;
      EXPECT_TRUE(torch::equal(x.labels, y.labels)) << name(protocol) << " click " << i;
      EXPECT_TRUE(torch::equal(x.points.slice(0, 1, 3), z.points)) << name(protocol);
    }
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto one_draw = draw_click_uniforms(1, 3, ClickProtocol::kRandom, gen, torch::kCPU, {});
  EXPECT_THROW(sample_clicks(c.logits, c.target, ClickProtocol::kFnFp5050, one_draw[0]), Error);
  EXPECT_THROW(draw_click_uniforms(1, 3, ClickProtocol::kRandom, gen, torch::kCPU, {1, 3}), Error);
}
