// The optimiser step and the training step's entry point with simulated clicks: the
// multi-tensor AdamW takes LibTorch's AdamW steps exactly, and drawing a step's clicks up front
// trains exactly as drawing each click's as it is placed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/interaction/refinement.h"
#include "msam/model/presets.h"
#include "msam/model/state_dict.h"
#include "msam/train/adamw.h"
#include "msam/train/step_graph.h"

using namespace msam;

namespace {

std::vector<torch::optim::OptimizerParamGroup> groups(const std::vector<torch::Tensor>& p) {
  auto first = std::make_unique<torch::optim::AdamWOptions>(1e-2);
  first->weight_decay(0.1);
  auto second = std::make_unique<torch::optim::AdamWOptions>(3e-3);
  second->betas({0.8, 0.95}).eps(1e-6).weight_decay(0);
  std::vector<torch::optim::OptimizerParamGroup> g;
  g.emplace_back(std::vector<torch::Tensor>{p[0], p[1]}, std::move(first));
  g.emplace_back(std::vector<torch::Tensor>{p[2]}, std::move(second));
  return g;
}

std::vector<torch::Tensor> parameters(uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> p;
  for (auto shape : {std::vector<int64_t>{3, 4}, {5}, {2, 2, 2}})
    p.push_back(torch::randn(shape).requires_grad_());
  return p;
}

}  // namespace

TEST(MultiTensorAdamW, TakesLibTorchsAdamWStepsExactly) {
  auto mine = parameters(1), theirs = parameters(1);
  train::MultiTensorAdamW a(groups(mine));
  torch::optim::AdamW b(groups(theirs));
  torch::manual_seed(2);
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < mine.size(); ++i) {
      // The third tensor goes without a gradient at step 1: its step count falls behind.
      if (step == 1 && i == 2) {
        mine[i].mutable_grad() = torch::Tensor();
        theirs[i].mutable_grad() = torch::Tensor();
        continue;
      }
      const auto g = torch::randn(mine[i].sizes());
      mine[i].mutable_grad() = g.clone();
      theirs[i].mutable_grad() = g.clone();
    }
    a.step();
    b.step();
    for (size_t i = 0; i < mine.size(); ++i)
      EXPECT_TRUE(torch::equal(mine[i], theirs[i])) << "tensor " << i << " step " << step;
  }
  // The same state, so checkpoints written from either load into the other.
  ASSERT_EQ(a.state().size(), b.state().size());
  for (size_t i = 0; i < mine.size(); ++i) {
    const auto& sa = static_cast<const torch::optim::AdamWParamState&>(
        *a.state().at(compat::optimizer_state_key(a.state(), mine[i])));
    const auto& sb = static_cast<const torch::optim::AdamWParamState&>(
        *b.state().at(compat::optimizer_state_key(b.state(), theirs[i])));
    EXPECT_EQ(sa.step(), sb.step());
    EXPECT_EQ(sa.step(), i == 2 ? 3 : 4);
    EXPECT_TRUE(torch::equal(sa.exp_avg(), sb.exp_avg()));
    EXPECT_TRUE(torch::equal(sa.exp_avg_sq(), sb.exp_avg_sq()));
  }
}

TEST(MultiTensorAdamW, RefusesAmsgrad) {
  auto p = parameters(1);
  EXPECT_THROW(train::MultiTensorAdamW({torch::optim::OptimizerParamGroup({p[0]})},
                                       torch::optim::AdamWOptions(1e-3).amsgrad(true)),
               Error);
}

// The trainer's step (clicks drawn up front, no graph on the CPU) against the step with the
// generator's clicks drawn as each is placed: the same losses and weights, bit for bit.
TEST(SimulatedTrainingStep, EqualsTheStepWithTheGeneratorsClicks) {
  const auto cfg = model::tiny_cpu_config();
  torch::manual_seed(5);
  const auto image = torch::randn({2, 1, 64, 64, 64});
  auto target = torch::zeros({2, 1, 64, 64, 64});
  target.slice(2, 20, 40).slice(3, 24, 44).slice(4, 18, 36).fill_(1);
  // fnfp5050 takes two draws per click, center one after host-side work.
  for (auto protocol : {interaction::ClickProtocol::kFnFp5050, interaction::ClickProtocol::kCenter}) {
    train::StepSettings s;
    s.refinement.iterations = 3;
    s.refinement.protocol = protocol;
    s.refinement.multi_click = true;
    auto run = [&](bool up_front) {
      torch::manual_seed(6);
      model::MSAM net(cfg);
      net->image_encoder->freeze_base(true);
      net->train();
      train::MultiTensorAdamW opt(
          {torch::optim::OptimizerParamGroup(train::trainable_parameters(net))},
          torch::optim::AdamWOptions(1e-3));
      train::GradScaler scaler(train::GradScalerOptions{65536.0, 2.0, 0.5, 2000, false});
      auto gen = torch::make_generator<at::CPUGeneratorImpl>(9);
      std::vector<torch::Tensor> losses;
      for (int step = 0; step < 2; ++step) {
        const auto out =
            up_front ? train::simulated_training_step(net, image, target, s, gen, {}, opt, scaler)
                     : train::training_step(
                           net, image, target, s,
                           interaction::simulated_clicks(target, s.refinement, gen), opt, scaler);
        losses.push_back(out.iteration_losses);
      }
      return std::make_pair(torch::cat(losses), model::state_dict(*net));
    };
    const auto [lazy_losses, lazy_state] = run(false);
    const auto [ahead_losses, ahead_state] = run(true);
    EXPECT_TRUE(torch::equal(lazy_losses, ahead_losses)) << static_cast<int>(protocol);
    for (const auto& [k, v] : lazy_state)
      EXPECT_TRUE(torch::equal(v, ahead_state.at(k))) << k << " " << static_cast<int>(protocol);
  }
}
