// The model, a training step and the click sampler on the test device against the same on the
// CPU (MSAM_TEST_DEVICE=cuda, tools/gpu_check.sh). The CPU path matches the reference fixtures
// (parity tests), so agreement here carries that parity to the GPU, including the modules whose
// fixtures are too large to travel to the GPU machine (adapter, decoder, click loop).
// Skipped when the test device is the CPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/interaction/click_sampler.h"
#include "msam/model/cuda_graphs.h"
#include "msam/model/msam.h"
#include "msam/model/state_dict.h"
#include "msam/train/step_graph.h"
#include "msam/train/training_step.h"

using namespace msam;

namespace {

#define SKIP_ON_CPU()                                                          \
  if (!test::device().is_cuda()) GTEST_SKIP() << "MSAM_TEST_DEVICE is the CPU"

// Relative-norm distance of a device result from the CPU one.
double rel(const torch::Tensor& a, const torch::Tensor& ref) {
  auto x = a.detach().to(torch::kCPU, torch::kDouble), r = ref.detach().to(torch::kCPU, torch::kDouble);
  return ((x - r).norm() / r.norm().clamp_min(1e-30)).item<double>();
}

double tolerance() { return test::bf16_autocast() ? test::kBf16RelNorm : 2e-4; }

// Random values in the parameters the reference initialises to zero (LoRA B, relative-position
// tables, absolute position), so that every path contributes.
void randomise_zero_init(model::MSAM& net) {
  torch::NoGradGuard no_grad;
  for (auto& p : net->named_parameters()) {
    const auto& k = p.key();
    if (k.find("linear_b_") != std::string::npos || k.find("rel_pos") != std::string::npos ||
        k.find("pos_embed") != std::string::npos)
      p.value().normal_(0, 0.05);
  }
}

// A seeded model in training mode on `d`, its encoder's base frozen (LoRA trains), with its
// trainable parameters.
std::pair<model::MSAM, std::vector<torch::Tensor>> trainable_model(const model::MSAMConfig& cfg,
                                                                  uint64_t seed,
                                                                  const torch::Device& d) {
  torch::manual_seed(seed);
  model::MSAM net(cfg);
  randomise_zero_init(net);
  net->image_encoder->freeze_base(true);
  net->to(d);
  net->train();
  return {net, train::trainable_parameters(net)};
}

model::MSAMConfig vit_b() {
  model::MSAMConfig c;
  c.encoder.lora_rank = 4;
  return c;
}

// A ball of foreground in a B×1×S³ volume.
torch::Tensor ball(int64_t batch, int64_t size, double radius) {
  auto r = torch::arange(size, torch::kFloat) - size / 2.0;
  auto d2 = r.pow(2).view({-1, 1, 1}) + r.pow(2).view({1, -1, 1}) + r.pow(2).view({1, 1, -1});
  return (d2 <= radius * radius).to(torch::kFloat).expand({batch, 1, size, size, size}).contiguous();
}

}  // namespace

TEST(DeviceConsistency, VitBEncoderAndThreeClicksMatchCpu) {
  SKIP_ON_CPU();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  model::MSAM net(vit_b());
  randomise_zero_init(net);
  net->eval();
  const auto image = torch::randn({1, 1, 128, 128, 128});
  const auto points = torch::tensor({40, 64, 70, 80, 50, 60, 64, 64, 90}, torch::kLong).view({3, 1, 1, 3});
  const auto labels = torch::tensor({1, 0, 1}, torch::kLong).view({3, 1, 1});

  auto run = [&](const torch::Device& d) {
    net->to(d);
    std::vector<torch::Tensor> out;
    auto ctx = net->encode(image.to(d));
    out.push_back(ctx.image_embedding);
    auto low = torch::zeros({1, 1, 32, 32, 32}, d);
    for (int k = 0; k < 3; ++k) {
      auto pred = net->click(ctx, points[k].to(d), labels[k].to(d), low);
      low = pred.low_res_masks;
      out.push_back(low);
      out.push_back(pred.iou_pred);
    }
    out.push_back(net->upsample(low));
    for (auto& t : out) t = t.to(torch::kCPU, torch::kFloat);
    return out;
  };
  const auto cpu = run(torch::kCPU);
  const auto dev = run(test::device());
  const char* names[] = {"image embedding", "click 1 logits", "click 1 IoU", "click 2 logits",
                         "click 2 IoU",     "click 3 logits", "click 3 IoU", "upsampled"};
  for (size_t i = 0; i < cpu.size(); ++i)
    EXPECT_LE(rel(dev[i], cpu[i]), tolerance()) << names[i];
}

TEST(DeviceConsistency, TrainingStepMatchesCpu) {
  SKIP_ON_CPU();
  const auto cfg = model::tiny_cpu_config();
  torch::manual_seed(1);
  const auto image = torch::randn({2, 1, 64, 64, 64});
  const auto target = ball(2, 64, 9);
  train::StepSettings s;
  s.refinement.iterations = 4;

  auto step = [&](const torch::Device& d) {
    auto [net, params] = trainable_model(cfg, 2, d);
    // SGD with lr 1: the update is the gradient itself (Adam's first step is ±lr, whose sign
    // flips where a gradient is at rounding level).
    torch::optim::SGD opt(params, torch::optim::SGDOptions(1.0));
    train::GradScaler scaler(train::GradScalerOptions{65536.0, 2.0, 0.5, 2000, false});
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(5);
    const auto t = target.to(d);
    auto out = train::training_step(net, image.to(d), t, s,
                                    interaction::simulated_clicks(t, s.refinement, gen), opt,
                                    scaler);
    return std::make_pair(out.loss.to(torch::kCPU), model::state_dict(*net));
  };
  const auto [cpu_loss, cpu_state] = step(torch::kCPU);
  const auto [dev_loss, dev_state] = step(test::device());
  EXPECT_TRUE(std::isfinite(dev_loss.item<double>()));
  EXPECT_LE(rel(dev_loss, cpu_loss), tolerance());
  // The updates are the gradients: compare them.
  torch::manual_seed(2);
  model::MSAM init(cfg);
  randomise_zero_init(init);
  const auto before = model::state_dict(*init);
  for (const auto& [k, v] : cpu_state) {
    const auto delta_cpu = v - before.at(k);
    if (delta_cpu.abs().max().item<double>() == 0) continue;  // frozen
    EXPECT_LE(rel(dev_state.at(k) - before.at(k), delta_cpu), 5 * tolerance()) << k;
  }
}

TEST(DeviceConsistency, ClickSamplerGivesTheCpuClicksForASeed) {
  SKIP_ON_CPU();
  torch::manual_seed(3);
  const auto target = ball(3, 32, 7);
  const auto logits = torch::randn({3, 1, 32, 32, 32}) * 3;
  for (auto protocol : {interaction::ClickProtocol::kRandom, interaction::ClickProtocol::kFnFp5050,
                        interaction::ClickProtocol::kCenter}) {
    auto g_cpu = torch::make_generator<at::CPUGeneratorImpl>(11);
    auto g_dev = torch::make_generator<at::CPUGeneratorImpl>(11);
    const auto a = interaction::sample_clicks(logits, target, protocol, g_cpu);
    const auto b = interaction::sample_clicks(logits.to(test::device()), target.to(test::device()),
                                        protocol, g_dev);
    EXPECT_TRUE(torch::equal(a.points, b.points.to(torch::kCPU))) << static_cast<int>(protocol);
    EXPECT_TRUE(torch::equal(a.labels, b.labels.to(torch::kCPU))) << static_cast<int>(protocol);
  }
}

TEST(DeviceConsistency, CudaGraphsReplayTheEagerModel) {
  SKIP_ON_CPU();
  if (!model::CudaGraphCache::supported()) GTEST_SKIP() << "built without CUDA graphs";
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  model::MSAM net(vit_b());
  randomise_zero_init(net);
  net->image_encoder->merge_lora();
  net->eval();
  net->to(test::device());
  const auto d = test::device();
  const auto volumes = torch::randn({2, 1, 1, 128, 128, 128}, d);
  const auto points = torch::tensor({40, 64, 70, 80, 50, 60}, torch::kLong).view({2, 1, 1, 3}).to(d);
  const auto labels = torch::tensor({1, 0}, torch::kLong).view({2, 1, 1}).to(d);

  // Volume 0, volume 1, volume 0 again: the graphs' static context must follow the volume.
  auto run = [&](bool graphs) {
    net->set_cuda_graphs(graphs);
    std::vector<torch::Tensor> out;
    for (int v : {0, 1, 0}) {
      auto ctx = net->encode(volumes[v]);
      out.push_back(ctx.image_embedding);
      auto low = torch::zeros({1, 1, 32, 32, 32}, d);
      for (int k = 0; k < 2; ++k) {
        auto pred = net->click(ctx, points[k], labels[k], low);
        low = pred.low_res_masks;
        out.push_back(low);
        out.push_back(pred.iou_pred);
      }
    }
    if (graphs) {
      EXPECT_TRUE(net->cuda_graphs_usable()) << "a capture failed (see stderr)";
    }
    net->set_cuda_graphs(false);
    return out;
  };
  const auto eager = run(false);
  const auto graphed = run(true);
  ASSERT_EQ(eager.size(), graphed.size());
  for (size_t i = 0; i < eager.size(); ++i) EXPECT_LE(rel(graphed[i], eager[i]), 1e-5) << i;
}

// The trainer's CUDA path: a step's forward and backward replayed from a captured graph give the
// eager step's losses and updates, batch after batch (new inputs copied into the graph), and a
// batch of another shape (an epoch's last) runs eagerly in between without disturbing it.
TEST(DeviceConsistency, TrainingStepGraphReplaysTheEagerStep) {
  SKIP_ON_CPU();
  if (!train::TrainingStepGraph::supported()) GTEST_SKIP() << "built without CUDA graphs";
  const auto d = test::device();
  const auto cfg = model::tiny_cpu_config();
  torch::manual_seed(7);
  const auto images = torch::randn({4, 2, 1, 64, 64, 64}).to(d);
  const auto targets = torch::cat({ball(2, 64, 9), ball(2, 64, 14)}).view({2, 2, 1, 64, 64, 64})
                           .repeat({2, 1, 1, 1, 1, 1}).to(d);
  train::StepSettings s;
  s.refinement.iterations = 4;
  s.refinement.multi_click = true;
  s.amp_dtype = test::bf16_autocast() ? torch::kBFloat16 : torch::kFloat;

  auto run = [&](bool graphed) {
    auto [net, params] = trainable_model(cfg, 8, d);
    torch::optim::SGD opt(params, torch::optim::SGDOptions(1e-2));
    train::GradScaler scaler(train::GradScalerOptions{65536.0, 2.0, 0.5, 2000, false});
    train::TrainingStepGraph graph;
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(5);
    std::vector<torch::Tensor> losses;
    for (int64_t k = 0; k < 4; ++k) {
      // Step 2 has one sample: another shape, eager in both runs.
      const auto image = k == 2 ? images[k].slice(0, 0, 1) : images[k];
      const auto target = k == 2 ? targets[k].slice(0, 0, 1) : targets[k];
      const auto out = train::simulated_training_step(net, image, target, s, gen, {}, opt, scaler,
                                                      graphed ? &graph : nullptr);
      losses.push_back(out.iteration_losses.to(torch::kCPU));
    }
    if (graphed) {
      EXPECT_TRUE(graph.usable()) << "the capture failed (see stderr)";
    }
    return std::make_pair(torch::stack(losses), model::state_dict(*net));
  };
  const auto [eager_losses, eager_state] = run(false);
  const auto [graph_losses, graph_state] = run(true);
  EXPECT_LE(rel(graph_losses, eager_losses), tolerance());
  torch::manual_seed(8);
  model::MSAM init(cfg);
  randomise_zero_init(init);
  const auto before = model::state_dict(*init);
  std::vector<torch::Tensor> eager_updates, graph_updates;
  for (const auto& [k, v] : eager_state) {
    const auto delta = v - before.at(k);
    if (delta.abs().max().item<double>() == 0) continue;  // frozen
    eager_updates.push_back(delta.flatten());
    graph_updates.push_back((graph_state.at(k) - before.at(k)).flatten());
    // Under bf16 the gradients that are rounding noise (attention key biases: softmax is
    // shift-invariant) differ between any two runs (atomic adds in the backward of the
    // upsampling): there the update is compared as a whole, below.
    if (!test::bf16_autocast()) {
      EXPECT_LE(rel(graph_updates.back(), eager_updates.back()), 5 * tolerance()) << k;
    }
  }
  EXPECT_LE(rel(torch::cat(graph_updates), torch::cat(eager_updates)), 5 * tolerance());
}
