// Training steps with simulated clicks, their forward and backward replayed from one captured
// CUDA graph.
//
// Why: a ViT-B M-SAM step runs the image encoder and ~11 refinement iterations forward and
// backward: tens of thousands of small kernels, whose launches, not the GPU's arithmetic, bound
// the step on an H200 (batch 2 and batch 8 took the same time; bf16 was slower than fp32). A
// replay launches them all at once. The optimiser step stays outside the graph (the learning
// rate changes between steps; MultiTensorAdamW keeps it to a few launches), and so does the
// data-parallel all-reduce.
//
// What a graph needs: one input shape (the trainer's full batches; a last, smaller batch runs
// eagerly), clicks drawn before the step (draw_click_uniforms: the graph reads them from its
// buffer), and no host synchronisation inside the step: not the center protocol (its
// boundary_distance waits for the GPU per erosion step), not mask perturbation (drawn as it
// goes), not fp16 (the loss scale changes). Otherwise, and after a failed capture (reported
// once), steps run eagerly with the same clicks.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

#include "msam/interaction/click_sampler.h"
#include "msam/train/training_step.h"

namespace msam::train {

// One per model being trained (the graph reads and writes that model's parameters in place).
class TrainingStepGraph {
 public:
  // Whether this build can capture CUDA graphs (a CUDA LibTorch with its CUDA headers).
  static bool supported();
  // Why steps with these settings on `device` cannot be replayed (empty: they can).
  static std::string unsupported_reason(const StepSettings& settings, const GradScaler& scaler,
                                        bool mask_perturbation, const torch::Device& device);

  TrainingStepGraph();
  ~TrainingStepGraph();
  TrainingStepGraph(const TrainingStepGraph&) = delete;
  TrainingStepGraph& operator=(const TrainingStepGraph&) = delete;

  // forward_backward with the simulated clicks of `uniforms`, replayed from the graph
  // (captured on the first call, after two eager warm-up passes, for this call's shapes and
  // settings): the gradients are left in the parameters' .grad. nullopt where the shapes or
  // settings differ from the captured ones, or a capture has failed: run eagerly then.
  std::optional<StepOutput> forward_backward(model::MSAM& model, const torch::Tensor& image,
                                             const torch::Tensor& target,
                                             const StepSettings& settings,
                                             const torch::Tensor& uniforms,
                                             const GradScaler& scaler);

  // False once a capture has failed (every step runs eagerly from then on).
  bool usable() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One training step with clicks simulated from `target`, every click's draws made up front
// from `generator` (this rank's `share` of the batch): from `graph` where it is given and the
// step can be replayed, else eagerly (training_step). Both place the clicks that
// interaction::simulated_clicks with the same generator places.
StepOutput simulated_training_step(model::MSAM& model, const torch::Tensor& image,
                                   const torch::Tensor& target, const StepSettings& settings,
                                   torch::Generator& generator, interaction::BatchShare share,
                                   torch::optim::Optimizer& optimizer, GradScaler& scaler,
                                   TrainingStepGraph* graph = nullptr,
                                   const std::function<void()>& sync_gradients = {},
                                   const interaction::MaskPerturbation& perturb = {});

}  // namespace msam::train
