#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "msam/common/error.h"
#include "msam/train/loss.h"
#include "msam/train/training_step.h"

using namespace msam;

// Autograd gradients of both losses agree with central finite differences (float64).
TEST(Loss, GradientsMatchFiniteDifferences) {
  torch::manual_seed(5);
  const auto logits = torch::randn({2, 1, 4, 3, 5}, torch::kDouble).requires_grad_(true);
  const auto target = torch::rand({2, 1, 4, 3, 5}).gt(0.5).to(torch::kLong);
  for (auto loss : {&train::dice_ce_loss_monai12, &train::dice_bce_loss}) {
    auto grad = torch::autograd::grad({loss(logits, target)}, {logits})[0];
    const auto flat = logits.detach().flatten();
    for (int64_t i : {0, 17, 59, 119}) {
      auto plus = flat.clone(), minus = flat.clone();
      plus[i] += 1e-6;
      minus[i] -= 1e-6;
      const double numeric = (loss(plus.view_as(logits), target).item<double>() -
                              loss(minus.view_as(logits), target).item<double>()) /
                             2e-6;
      EXPECT_NEAR(grad.flatten()[i].item<double>(), numeric, 1e-7) << i;
    }
  }
}

TEST(Loss, PerfectAndOppositePredictions) {
  auto target = torch::zeros({1, 1, 4, 4, 4}, torch::kLong);
  target.index_put_({0, 0, torch::indexing::Slice(0, 2)}, 1);
  const auto sure = (target.to(torch::kDouble) * 2 - 1) * 40;  // sigmoid ≈ target
  EXPECT_NEAR(train::soft_dice_loss_per_item(sure, target).item<double>(), 0.0, 1e-9);
  // Opposite: Σt·p ≈ 0 and Σt² = Σp² = 32, so only the smoothing terms remain.
  EXPECT_NEAR(train::soft_dice_loss_per_item(-sure, target).item<double>(),
              1.0 - 1e-5 / (64.0 + 1e-5), 1e-9);
  EXPECT_THROW(train::soft_dice_loss_per_item(sure, target.squeeze(0)), Error);
  EXPECT_THROW(train::bce_with_logits_loss(sure, target.flatten()), Error);
}

// The Dice that picks best.safetensors thresholds the logits where evaluation does
// (loop.threshold), and leaves out samples that are empty on both sides.
TEST(MaskDice, ThresholdIsTheRunsAndEmptySamplesAreLeftOut) {
  auto logits = torch::full({2, 1, 4, 4, 4}, -5.0);
  auto target = torch::zeros({2, 1, 4, 4, 4});
  target[0].narrow(1, 0, 2).fill_(1);   // half of sample 0 is lesion
  logits[0].narrow(1, 0, 2).fill_(0.3);  // probability 0.57: above 0, below the logit 0.5
  EXPECT_DOUBLE_EQ(msam::train::mask_dice(logits, target, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(msam::train::mask_dice(logits, target, 0.5), 0.0);
  // A negative threshold is a probability below 0.5: sigmoid(-6) ≈ 0.0025 lets -5 through, so
  // both samples are all foreground (sample 1's Dice 0 now counts).
  EXPECT_DOUBLE_EQ(msam::train::mask_dice(logits, target, -6.0), 0.5 * 2.0 * 32 / (64 + 32));
  EXPECT_TRUE(std::isnan(msam::train::mask_dice(logits[1].unsqueeze(0), target[1].unsqueeze(0), 0.5)));
}
