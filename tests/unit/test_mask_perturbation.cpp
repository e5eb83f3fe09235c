// loop.mask_perturbation: nothing changes at probability 0; at 1 every sample gets one ball of
// the documented size set to threshold ± 4 (a hole only around a predicted voxel); two ranks'
// shares perturb exactly as the whole batch does; a bad probability is an error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "msam/common/error.h"
#include "msam/interaction/mask_perturbation.h"

using namespace msam;
using namespace msam::interaction;

namespace {

// B×1×32³ low-res logits: a predicted box in samples 0 and 1, nothing predicted in sample 2.
torch::Tensor previous_logits() {
  auto low = torch::full({3, 1, 32, 32, 32}, -2.0);
  low[0].slice(1, 4, 20).slice(2, 6, 22).slice(3, 8, 24) = 3.0;
  low[1].slice(1, 10, 30).slice(2, 2, 12).slice(3, 12, 28) = 1.0;
  return low;
}

}  // namespace

TEST(MaskPerturbation, ProbabilityZeroChangesNothing) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1);
  const auto low = previous_logits();
  EXPECT_TRUE(torch::equal(ball_perturbation(0, 0, gen)(1, low), low));
}

TEST(MaskPerturbation, EverySampleGetsOneBallOfTheDocumentedKind) {
  const double threshold = 0.5;
  const auto low = previous_logits();
  int holes = 0, false_positives = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(seed);
    const auto out = ball_perturbation(1, threshold, gen)(1, low);
    const auto changed = out.ne(low);
    for (int64_t b = 0; b < 3; ++b) {
      const auto values = out[b].masked_select(changed[b]);
      if (values.numel() == 0) continue;  // a ball over voxels that already had the value
      const double v = values[0].item<double>();
      ASSERT_TRUE(values.eq(v).all().item<bool>());
      if (v == threshold - 4) {
        ++holes;
        // A hole is centred on a predicted voxel: it removes some of the prediction.
        EXPECT_NE(b, 2) << "no prediction to make a hole in";
        EXPECT_TRUE((low[b] > threshold).logical_and(changed[b]).any().item<bool>());
      } else {
        ASSERT_EQ(v, threshold + 4);
        ++false_positives;
      }
      // At most a ball of radius 32/6: its volume, and no voxel farther apart than 2·32/6.
      EXPECT_LE(values.numel(), 4.19 * std::pow(32.0 / 6, 3) + 1);
      const auto idx = changed[b][0].nonzero().to(torch::kDouble);
      EXPECT_LE((idx.amax(0) - idx.amin(0)).max().item<double>(), 2 * 32.0 / 6 + 1e-9);
    }
  }
  EXPECT_GT(holes, 5);
  EXPECT_GT(false_positives, 5);
}

TEST(MaskPerturbation, SharesPerturbAsTheWholeBatch) {
  const auto low = previous_logits();
  auto whole_gen = torch::make_generator<at::CPUGeneratorImpl>(9);
  const auto whole = ball_perturbation(0.7, 0, whole_gen);
  auto gen0 = torch::make_generator<at::CPUGeneratorImpl>(9);
  auto gen1 = torch::make_generator<at::CPUGeneratorImpl>(9);
  const auto first = ball_perturbation(0.7, 0, gen0, {0, 3});
  const auto second = ball_perturbation(0.7, 0, gen1, {2, 3});
  for (int iteration = 1; iteration < 4; ++iteration) {
    const auto expected = whole(iteration, low);
    EXPECT_TRUE(torch::equal(torch::cat({first(iteration, low.slice(0, 0, 2)),
                                         second(iteration, low.slice(0, 2, 3))}),
                             expected));
  }
}

TEST(MaskPerturbation, BadInputIsAnError) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1);
  EXPECT_THROW(ball_perturbation(1.5, 0, gen), Error);
  EXPECT_THROW(ball_perturbation(0.5, 0, gen)(1, torch::zeros({1, 1, 8, 8, 4})), Error);
}
