// One optimisation step as the reference takes it, and its parts: the Dice that training
// reports, the loss of an iteration, gradient clipping, the freeze policy, the optimiser.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "msam/interaction/refinement.h"
#include "msam/model/msam.h"
#include "msam/train/adamw.h"
#include "msam/train/config.h"
#include "msam/train/grad_scaler.h"

namespace msam::train {

// Training and validation Dice (train_msam.py `get_dice_score`): prediction = logits >
// `threshold`, per-sample Dice averaged over the batch; samples with both masks empty are left
// out. The run's `loop.threshold`, so the Dice that picks best.safetensors scores the mask that
// evaluation scores; the reference's 0.5 on logits (not probabilities) is a slip kept for
// comparable numbers.
double mask_dice(const torch::Tensor& logits, const torch::Tensor& target, double threshold);
// (Σ per-sample Dice, samples counted) as a float64 tensor of 2 on the logits' device: what
// ranks holding parts of one batch add up to that batch's Dice.
torch::Tensor mask_dice_parts(const torch::Tensor& logits, const torch::Tensor& target,
                              double threshold);
// The same as a scalar tensor on the logits' device (NaN when every sample is empty on both
// sides), so that a training step need not wait for it.
torch::Tensor mask_dice_tensor(const torch::Tensor& logits, const torch::Tensor& target,
                               double threshold);

// Loss of one refinement iteration's full-size logits, computed in float32 or wider (float64
// logits stay float64).
torch::Tensor iteration_loss(const torch::Tensor& logits, const torch::Tensor& target,
                             LossKind kind);

// Scales every gradient of the optimiser's parameters by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖
// the L2 norm over all of them (torch.nn.utils.clip_grad_norm_), on their device: no host sync.
void clip_grad_norm(torch::optim::Optimizer& optimizer, double max_norm);

// The run's freeze policy: `model.freeze: encoder` freezes the image encoder's own weights
// (its LoRA, if any, trains); everything else trains.
void apply_freeze(model::MSAM& model, const Config& config);

// The parameters that train under the model's current freeze policy (requires_grad).
std::vector<torch::Tensor> trainable_parameters(model::MSAM& model);

// AdamW over the trainable parameters in the reference's groups (image encoder, LoRA, prompt
// encoder, mask decoder, adapter), each at `optim.lr` times its `lr_mult`.
std::unique_ptr<MultiTensorAdamW> make_optimizer(model::MSAM& model, const OptimConfig& optim);

// Everything one optimisation step needs besides the model, the batch and the optimiser.
struct StepSettings {
  interaction::RefinementOptions refinement;
  LossKind loss = LossKind::kDice;
  LossReduce reduce = LossReduce::kSum;
  at::ScalarType amp_dtype = at::kFloat;  // kBFloat16 / kHalf: CUDA autocast
  bool encoder_frozen = false;            // frozen base and no LoRA: encoder without autograd
  double clip_grad_norm = 0;              // > 0: clip the global gradient norm (unscaled)
};

struct StepOutput {
  torch::Tensor loss;  // scalar, on the model's device
  torch::Tensor iteration_losses;  // the summands of `loss`: every iteration's, or the last's
  torch::Tensor dice;  // reference Dice after the last iteration, scalar (may be NaN)
  torch::Tensor dice_parts;  // its mask_dice_parts
  bool stepped = true; // false: fp16 overflow, the optimiser step was skipped
};

// The step settings of a run configuration.
StepSettings step_settings(const Config& config);

// One training step as the reference: image encoder once, the refinement loop with clicks from
// `clicks` (the trainer's: simulated from `target`) and the loss of every iteration (or the
// last), backward through the whole loop, optimiser step through the grad scaler. No host
// synchronisation except the scaler's overflow check (fp16 only). `sync_gradients`, when
// given, runs between backward and the step (data parallelism: the gradient all-reduce, so
// that clipping and the fp16 overflow check see the global gradient on every rank). An
// undefined `image` (a rank whose share of the batch is empty) skips forward and backward.
// `perturb`: the loop's mask perturbation (loop.mask_perturbation > 0; the trainer's draws).
// = optimizer.zero_grad(), forward_backward, apply_gradients.
StepOutput training_step(model::MSAM& model, const torch::Tensor& image,
                         const torch::Tensor& target, const StepSettings& settings,
                         const interaction::ClickSource& clicks,
                         torch::optim::Optimizer& optimizer, GradScaler& scaler,
                         const std::function<void()>& sync_gradients = {},
                         const interaction::MaskPerturbation& perturb = {});

// The forward pass of a step (under autocast) and its backward: the loss, Dice and iteration
// losses (`stepped` left true), the scaled gradients added to the parameters' .grad.
StepOutput forward_backward(model::MSAM& model, const torch::Tensor& image,
                            const torch::Tensor& target, const StepSettings& settings,
                            const interaction::ClickSource& clicks, const GradScaler& scaler,
                            const interaction::MaskPerturbation& perturb = {});

// The rest of a step once the gradients are in .grad: `sync_gradients`, clipping, the
// optimiser step through the scaler (out.stepped) and the scaler's update.
void apply_gradients(StepOutput& out, torch::optim::Optimizer& optimizer, GradScaler& scaler,
                     const StepSettings& settings,
                     const std::function<void()>& sync_gradients = {});

}  // namespace msam::train
