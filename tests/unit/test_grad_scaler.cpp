#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/train/grad_scaler.h"
#include "msam/train/training_step.h"

using namespace msam;
using namespace msam::train;

namespace {

struct SgdRun {
  torch::Tensor w = torch::ones({3}, torch::requires_grad());
  torch::optim::SGD optimizer{{w}, torch::optim::SGDOptions(0.1)};
  // One iteration with loss sum(w · x): the true gradient is x.
  bool iterate(GradScaler& scaler, const torch::Tensor& x) {
    optimizer.zero_grad();
    scaler.scale((w * x).sum()).backward();
    const bool stepped = scaler.step(optimizer);
    scaler.update();
    return stepped;
  }
};

}  // namespace

TEST(GradScaler, UnscalesGradientsBeforeTheStep) {
  SgdRun s;
  GradScaler scaler;
  EXPECT_EQ(scaler.scale_value(), 65536.0);
  EXPECT_TRUE(s.iterate(scaler, torch::tensor({1.0f, 2.0f, 3.0f})));
  // w ← w − 0.1·x with the unscaled gradient.
  EXPECT_TRUE(torch::allclose(s.w, torch::tensor({0.9f, 0.8f, 0.7f})));
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(GradScaler, SkipsTheStepOnInfOrNanAndBacksOff) {
  SgdRun s;
  GradScaler scaler;
  const auto before = s.w.detach().clone();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(s.iterate(scaler, torch::tensor({1.0f, inf, 1.0f})));
  EXPECT_TRUE(torch::equal(s.w, before));
  EXPECT_EQ(scaler.scale_value(), 32768.0);
  EXPECT_FALSE(s.iterate(scaler, torch::tensor({std::nanf(""), 0.0f, 1.0f})));
  EXPECT_EQ(scaler.scale_value(), 16384.0);
  EXPECT_EQ(scaler.skipped_steps(), 2);
  EXPECT_TRUE(s.iterate(scaler, torch::tensor({1.0f, 1.0f, 1.0f})));
  EXPECT_FALSE(torch::equal(s.w, before));
}

TEST(GradScaler, GrowsAfterGrowthIntervalGoodSteps) {
  SgdRun s;
  GradScaler scaler({/*init_scale=*/8.0, /*growth_factor=*/2.0, /*backoff_factor=*/0.5,
                     /*growth_interval=*/3});
  const auto x = torch::ones({3});
  s.iterate(scaler, x);
  s.iterate(scaler, x);
  EXPECT_EQ(scaler.scale_value(), 8.0);
  s.iterate(scaler, x);
  EXPECT_EQ(scaler.scale_value(), 16.0);
  // An overflow resets the count of good steps.
  s.iterate(scaler, x);
  s.iterate(scaler, torch::tensor({1.0f, std::numeric_limits<float>::infinity(), 1.0f}));
  EXPECT_EQ(scaler.scale_value(), 8.0);
  s.iterate(scaler, x);
  s.iterate(scaler, x);
  EXPECT_EQ(scaler.scale_value(), 8.0);
  s.iterate(scaler, x);
  EXPECT_EQ(scaler.scale_value(), 16.0);
}

TEST(GradScaler, StateRoundTripAndMisuse) {
  SgdRun s;
  GradScaler scaler({8.0, 2.0, 0.5, 3});
  s.iterate(scaler, torch::ones({3}));
  s.iterate(scaler, torch::ones({3}));
  GradScaler restored({8.0, 2.0, 0.5, 3});
  restored.load_state(nlohmann::json::parse(scaler.state().dump()));
  s.iterate(restored, torch::ones({3}));
  EXPECT_EQ(restored.scale_value(), 16.0);  // the third good step, counted across the restore

  EXPECT_THROW(restored.load_state(nlohmann::json{{"scale", -1.0}, {"growth_tracker", 0}}), Error);
  EXPECT_THROW(restored.update(), Error);  // update() without step()
  s.optimizer.zero_grad();
  restored.scale(s.w.sum()).backward();
  restored.unscale(s.optimizer);
  EXPECT_THROW(restored.unscale(s.optimizer), Error);
  EXPECT_THROW(GradScaler({0.0, 2.0, 0.5, 3}), Error);
}

TEST(GradScaler, DisabledIsTransparent) {
  SgdRun s;
  GradScaler scaler({65536.0, 2.0, 0.5, 2000, /*enabled=*/false});
  const auto loss = (s.w * 2).sum();
  EXPECT_TRUE(torch::equal(scaler.scale(loss), loss));
  EXPECT_TRUE(s.iterate(scaler, torch::ones({3})));
  EXPECT_TRUE(torch::allclose(s.w, torch::full({3}, 0.9f)));
}

TEST(AutocastGuard, IsANoOpOnTheCpu) {
  {
    compat::AutocastGuard guard(torch::kCPU, torch::kHalf);
    EXPECT_FALSE(guard.active());
    const auto y = torch::matmul(torch::ones({2, 2}), torch::ones({2, 2}));
    EXPECT_EQ(y.scalar_type(), torch::kFloat);
  }
  compat::AutocastGuard fp32(torch::Device(torch::kCUDA, 0), torch::kFloat);
  EXPECT_FALSE(fp32.active());
}

TEST(ClipGradNorm, ScalesAllGradientsToTheGlobalNorm) {
  // Gradients (3) and (4, 0): global norm 5.
  auto a = torch::zeros({1}, torch::requires_grad()), b = torch::zeros({2}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({3.f});
  b.mutable_grad() = torch::tensor({4.f, 0.f});
  torch::optim::SGD sgd({a, b}, torch::optim::SGDOptions(1.0));
  clip_grad_norm(sgd, 10.0);  // below the limit: unchanged (up to the 1e-6 guard)
  EXPECT_NEAR(a.grad().item<float>(), 3.f, 1e-5);
  clip_grad_norm(sgd, 1.0);
  EXPECT_NEAR(a.grad().item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<float>(), 0.8f, 1e-5);
  EXPECT_NEAR(std::hypot(a.grad().item<float>(), b.grad()[0].item<float>()), 1.0, 1e-5);
}
