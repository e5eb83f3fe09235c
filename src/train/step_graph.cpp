#include "msam/train/step_graph.h"

#include <vector>

#include "msam/common/device.h"
#include "msam/common/log.h"
#include "msam/interaction/refinement.h"

#if MSAM_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>

#include "msam/common/cuda_capture.h"
#endif

namespace msam::train {

std::string TrainingStepGraph::unsupported_reason(const StepSettings& settings,
                                                  const GradScaler& scaler,
                                                  bool mask_perturbation,
                                                  const torch::Device& device) {
  if (!supported()) return "this build has no CUDA graphs";
  if (!device.is_cuda()) return "not on a CUDA device";
  if (settings.refinement.protocol == interaction::ClickProtocol::kCenter)
    return "the center click protocol waits for the GPU at every erosion step";
  if (mask_perturbation) return "mask perturbation draws while the loop runs";
  if (scaler.enabled()) return "fp16's loss scale changes between steps";
  return "";
}

#if MSAM_CUDA_GRAPHS

struct TrainingStepGraph::Impl {
  std::string key;  // the captured step's shapes and settings
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  torch::Tensor image, target, uniforms;  // static inputs
  StepOutput out;                         // static outputs
  // Each trainable parameter with the gradient buffer the graph's backward writes.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> gradients;
  bool failed = false;
  bool told_other_shape = false;
};

namespace {

void clear_gradients(const std::vector<torch::Tensor>& params) {
  for (auto p : params) p.mutable_grad() = torch::Tensor();
}

std::string signature(const torch::Tensor& image, const torch::Tensor& target,
                      const torch::Tensor& uniforms, const StepSettings& s) {
  std::string key;
  for (const auto& t : {image, target, uniforms})
    key += std::string(c10::toString(t.scalar_type())) + c10::str(t.sizes()) + "@" +
           std::to_string(t.device().index()) + "|";
  const auto& r = s.refinement;
  key += std::to_string(r.iterations) + "|" + std::to_string(static_cast<int>(r.protocol)) +
         "|" + std::to_string(r.multi_click) + "|" + std::to_string(r.threshold) + "|" +
         std::to_string(static_cast<int>(s.loss)) + "|" +
         std::to_string(static_cast<int>(s.reduce)) + "|" + c10::toString(s.amp_dtype) + "|" +
         std::to_string(s.encoder_frozen);
  return key;
}

}  // namespace

bool TrainingStepGraph::supported() { return true; }

std::optional<StepOutput> TrainingStepGraph::forward_backward(
    model::MSAM& model, const torch::Tensor& image, const torch::Tensor& target,
    const StepSettings& settings, const torch::Tensor& uniforms, const GradScaler& scaler) {
  auto& g = *impl_;
  if (g.failed) return std::nullopt;
  const auto key = signature(image, target, uniforms, settings);
  if (g.graph && key != g.key) {
    if (!g.told_other_shape) {
      spdlog::info("training steps of batch shape {} run eagerly (the captured step's is {})",
                   c10::str(image.sizes()), c10::str(g.image.sizes()));
      g.told_other_shape = true;
    }
    return std::nullopt;
  }
  try {
    if (!g.graph) {
      const auto params = trainable_parameters(model);
      g.key = key;
      g.image = image.clone();
      g.target = target.clone();
      g.uniforms = uniforms.clone();
      auto pass = [&] {
        return train::forward_backward(
            model, g.image, g.target, settings,
            interaction::simulated_clicks(g.target, settings.refinement, g.uniforms), scaler);
      };
      // Captured with no gradients: the graph's backward then writes each gradient into a
      // buffer of its own rather than adding to one.
      clear_gradients(params);
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      cuda::capture(
          *graph, 2,
          [&] {
            pass();
            clear_gradients(params);
          },
          [&] { g.out = pass(); });
      for (const auto& p : params)
        if (p.grad().defined()) g.gradients.emplace_back(p, p.grad());
      g.graph = std::move(graph);
      device::release_cached_memory(image.device());  // what the warm-up passes held
      spdlog::info("training step captured as a CUDA graph (batch {})", image.size(0));
    } else {
      g.image.copy_(image);
      g.target.copy_(target);
      g.uniforms.copy_(uniforms);
    }
    g.graph->replay();
  } catch (const std::exception& e) {
    g.failed = true;
    g.graph.reset();
    g.gradients.clear();
    g.out = StepOutput();
    clear_gradients(trainable_parameters(model));
    spdlog::warn("CUDA graph capture of the training step failed, training eagerly: {}",
                 e.what());
    return std::nullopt;
  }
  for (auto& [p, grad] : g.gradients) p.mutable_grad() = grad;
  StepOutput out;
  out.loss = g.out.loss.clone();
  out.iteration_losses = g.out.iteration_losses.clone();
  out.dice_parts = g.out.dice_parts.clone();
  out.dice = g.out.dice.clone();
  return out;
}

bool TrainingStepGraph::usable() const { return !impl_->failed; }

#else  // a LibTorch without CUDA: nothing to capture

struct TrainingStepGraph::Impl {};

bool TrainingStepGraph::supported() { return false; }

std::optional<StepOutput> TrainingStepGraph::forward_backward(model::MSAM&, const torch::Tensor&,
                                                              const torch::Tensor&,
                                                              const StepSettings&,
                                                              const torch::Tensor&,
                                                              const GradScaler&) {
  return std::nullopt;
}

bool TrainingStepGraph::usable() const { return false; }

#endif

TrainingStepGraph::TrainingStepGraph() : impl_(std::make_unique<Impl>()) {}
TrainingStepGraph::~TrainingStepGraph() = default;

StepOutput simulated_training_step(model::MSAM& model, const torch::Tensor& image,
                                   const torch::Tensor& target, const StepSettings& settings,
                                   torch::Generator& generator, interaction::BatchShare share,
                                   torch::optim::Optimizer& optimizer, GradScaler& scaler,
                                   TrainingStepGraph* graph,
                                   const std::function<void()>& sync_gradients,
                                   const interaction::MaskPerturbation& perturb) {
  if (!image.defined())
    return training_step(model, image, target, settings, interaction::ClickSource(), optimizer,
                         scaler, sync_gradients, perturb);
  const auto uniforms = interaction::draw_click_uniforms(
      settings.refinement.iterations, target.size(0), settings.refinement.protocol, generator,
      target.device(), share);
  if (graph &&
      TrainingStepGraph::unsupported_reason(settings, scaler, static_cast<bool>(perturb),
                                            image.device())
          .empty()) {
    if (auto out = graph->forward_backward(model, image, target, settings, uniforms, scaler)) {
      apply_gradients(*out, optimizer, scaler, settings, sync_gradients);
      return *out;
    }
  }
  return training_step(model, image, target, settings,
                       interaction::simulated_clicks(target, settings.refinement, uniforms),
                       optimizer, scaler, sync_gradients, perturb);
}

}  // namespace msam::train
