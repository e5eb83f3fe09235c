#include <gtest/gtest.h>
#include <torch/torch.h>

#include "msam/common/error.h"
#include "msam/train/scheduler.h"

using namespace msam;
using namespace msam::train;

namespace {

// Two parameter groups with the reference's base lrs (adapter 8e-4, decoder 8e-5).
struct TwoGroups {
  torch::Tensor a = torch::zeros({2}, torch::requires_grad());
  torch::Tensor b = torch::zeros({2}, torch::requires_grad());
  torch::optim::AdamW optimizer;
  TwoGroups()
      : optimizer({torch::optim::OptimizerParamGroup({a}, std::make_unique<torch::optim::AdamWOptions>(8e-4)),
                   torch::optim::OptimizerParamGroup({b}, std::make_unique<torch::optim::AdamWOptions>(8e-5))},
                  torch::optim::AdamWOptions(8e-4)) {}
  double lr(size_t g) { return optimizer.param_groups()[g].options().get_lr(); }
};

}  // namespace

TEST(Scheduler, MultiStepMilestones) {
  TwoGroups s;
  MultiStepLR sched(s.optimizer, {3, 5}, 0.1);
  std::vector<double> seen;
  for (int epoch = 0; epoch < 7; ++epoch) {
    EXPECT_EQ(sched.epoch(), epoch);
    seen.push_back(s.lr(0));
    EXPECT_DOUBLE_EQ(s.lr(1), s.lr(0) * 0.1);  // per-group ratio kept
    sched.step();
  }
  const std::vector<double> expected{8e-4, 8e-4, 8e-4, 8e-5, 8e-5, 8e-6, 8e-6};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(seen[i], expected[i], 1e-15) << i;
}

TEST(Scheduler, LinearWarmUpThenMilestones) {
  TwoGroups s;
  MultiStepLR sched(s.optimizer, {4}, 0.5, 3);
  std::vector<double> seen;
  for (int epoch = 0; epoch < 6; ++epoch, sched.step()) seen.push_back(s.lr(0) / 8e-4);
  const std::vector<double> expected{0.25, 0.5, 0.75, 1.0, 0.5, 0.5};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(seen[i], expected[i], 1e-12) << i;
  EXPECT_EQ(sched.base_lrs(), (std::vector<double>{8e-4, 8e-5}));
}

TEST(Scheduler, StateRestoresEpochAndLearningRates) {
  TwoGroups s;
  MultiStepLR sched(s.optimizer, {2, 4}, 0.1, 1);
  for (int i = 0; i < 3; ++i) sched.step();
  const auto saved = nlohmann::json::parse(sched.state().dump());

  // A fresh run whose optimizer starts from the base lrs again.
  TwoGroups r;
  MultiStepLR restored(r.optimizer, {2, 4}, 0.1, 1);
  restored.load_state(saved);
  EXPECT_EQ(restored.epoch(), 3);
  EXPECT_EQ(restored.current_lrs(), sched.current_lrs());
  sched.step();
  restored.step();
  EXPECT_EQ(restored.current_lrs(), sched.current_lrs());

  nlohmann::json wrong = saved;
  wrong["base_lrs"] = {1e-3};
  EXPECT_THROW(restored.load_state(wrong), Error);
  EXPECT_THROW(restored.load_state(nlohmann::json{{"epoch", 1}}), Error);
}
