#include "msam/train/training_step.h"

#include <algorithm>
#include <map>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/train/loss.h"

namespace msam::train {

torch::Tensor mask_dice_parts(const torch::Tensor& logits, const torch::Tensor& target,
                              double threshold) {
  auto pred = (logits.detach() > threshold).flatten(1);
  auto gt = (target > 0).flatten(1);
  auto inter = (pred & gt).sum(1).to(torch::kDouble);
  auto sum = (pred.sum(1) + gt.sum(1)).to(torch::kDouble);
  auto valid = sum > 0;
  auto dice = torch::where(valid, 2 * inter / sum.clamp_min(1), torch::zeros_like(sum));
  return torch::stack({dice.sum(), valid.sum().to(torch::kDouble)});
}

torch::Tensor mask_dice_tensor(const torch::Tensor& logits, const torch::Tensor& target,
                               double threshold) {
  const auto parts = mask_dice_parts(logits, target, threshold);
  // 0/0 = NaN when no sample counts, as the reference's empty mean.
  return parts[0] / parts[1];
}

double mask_dice(const torch::Tensor& logits, const torch::Tensor& target, double threshold) {
  return mask_dice_tensor(logits, target, threshold).item<double>();
}

torch::Tensor iteration_loss(const torch::Tensor& logits, const torch::Tensor& target,
                             LossKind kind) {
  auto l = logits.scalar_type() == torch::kDouble ? logits : logits.to(torch::kFloat);
  return kind == LossKind::kDice ? dice_ce_loss_monai12(l, target) : dice_bce_loss(l, target);
}

void clip_grad_norm(torch::optim::Optimizer& optimizer, double max_norm) {
  // By dtype: the multi-tensor ops take one dtype at a time.
  std::map<at::ScalarType, std::vector<torch::Tensor>> by_dtype;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params())
      if (p.grad().defined()) by_dtype[p.grad().scalar_type()].push_back(p.grad());
  if (by_dtype.empty()) return;
  std::vector<torch::Tensor> norms;
  for (const auto& [dtype, grads] : by_dtype)
    for (const auto& n : at::_foreach_norm(grads)) norms.push_back(n.to(torch::kFloat));
  const auto coef = (max_norm / (torch::stack(norms).norm(2) + 1e-6)).clamp_max(1.0);
  for (const auto& [dtype, grads] : by_dtype) compat::mul_all_(grads, coef.to(dtype));
}

std::vector<torch::Tensor> trainable_parameters(model::MSAM& model) {
  std::vector<torch::Tensor> params;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
  return params;
}

void apply_freeze(model::MSAM& model, const Config& config) {
  model->image_encoder->freeze_base(config.model.freeze == Freeze::kEncoder);
}

std::unique_ptr<MultiTensorAdamW> make_optimizer(model::MSAM& model, const OptimConfig& optim) {
  const auto& m = optim.lr_mult;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto add_group = [&](const std::vector<torch::Tensor>& params, double mult) {
    std::vector<torch::Tensor> trainable;
    for (const auto& p : params)
      if (p.requires_grad()) trainable.push_back(p);
    if (trainable.empty()) return;
    auto opts = std::make_unique<torch::optim::AdamWOptions>(optim.lr * mult);
    opts->betas({optim.betas[0], optim.betas[1]});
    opts->eps(optim.eps);
    opts->weight_decay(optim.weight_decay);
    groups.emplace_back(trainable, std::move(opts));
  };
  const auto lora = model->image_encoder->lora_parameters();
  std::vector<torch::Tensor> encoder_base;
  for (const auto& p : model->image_encoder->parameters())
    if (std::none_of(lora.begin(), lora.end(), [&](const auto& l) { return l.is_same(p); }))
      encoder_base.push_back(p);
  add_group(encoder_base, m.image_encoder);
  add_group(lora, m.lora);
  add_group(model->prompt_encoder->parameters(), m.prompt_encoder);
  add_group(model->mask_decoder->parameters(), m.mask_decoder);
  add_group(model->adapter->parameters(), m.adapter);
  return std::make_unique<MultiTensorAdamW>(
      std::move(groups), torch::optim::AdamWOptions(optim.lr).weight_decay(optim.weight_decay));
}

StepSettings step_settings(const Config& config) {
  StepSettings s;
  s.refinement = {config.loop.iterations, config.loop.protocol, config.loop.multi_click,
                  config.loop.threshold};
  s.loss = config.loss.kind;
  s.reduce = config.loss.reduce;
  s.amp_dtype = amp_dtype(config.precision);
  s.encoder_frozen = config.model.freeze == Freeze::kEncoder &&
                     config.model.architecture.encoder.lora_rank == 0;
  s.clip_grad_norm = config.optim.clip_grad_norm;
  return s;
}

StepOutput forward_backward(model::MSAM& model, const torch::Tensor& image,
                            const torch::Tensor& target, const StepSettings& s,
                            const interaction::ClickSource& clicks, const GradScaler& scaler,
                            const interaction::MaskPerturbation& perturb) {
  StepOutput out;
  {  // autocast covers the forward pass only
    compat::AutocastGuard amp(image.device(), s.amp_dtype);
    model::VolumeContext ctx;
    if (s.encoder_frozen) {
      torch::Tensor emb;
      {
        torch::NoGradGuard no_grad;
        emb = model->image_encoder(image);
      }
      ctx = model->context(emb);
    } else {
      ctx = model->encode(image);
    }
    out.loss = torch::zeros({}, target.options().dtype(torch::kFloat));
    std::vector<torch::Tensor> losses;
    interaction::run_refinement(
        model, ctx, s.refinement, clicks, [&](const interaction::IterationResult& it) {
          const bool last = it.index == s.refinement.iterations - 1;
          if (s.reduce == LossReduce::kSum || last) {
            losses.push_back(iteration_loss(it.logits, target, s.loss));
            out.loss = out.loss + losses.back();
          }
          if (last) {
            out.dice_parts = mask_dice_parts(it.logits, target, s.refinement.threshold);
            out.dice = out.dice_parts[0] / out.dice_parts[1];
          }
        },
        perturb);
    out.iteration_losses = torch::stack(losses).detach();
  }
  scaler.scale(out.loss).backward();
  out.loss = out.loss.detach();
  return out;
}

void apply_gradients(StepOutput& out, torch::optim::Optimizer& optimizer, GradScaler& scaler,
                     const StepSettings& s, const std::function<void()>& sync_gradients) {
  if (sync_gradients) sync_gradients();
  if (s.clip_grad_norm > 0) {
    scaler.unscale(optimizer);
    clip_grad_norm(optimizer, s.clip_grad_norm);
  }
  out.stepped = scaler.step(optimizer);
  scaler.update();
}

StepOutput training_step(model::MSAM& model, const torch::Tensor& image,
                         const torch::Tensor& target, const StepSettings& s,
                         const interaction::ClickSource& clicks,
                         torch::optim::Optimizer& optimizer, GradScaler& scaler,
                         const std::function<void()>& sync_gradients,
                         const interaction::MaskPerturbation& perturb) {
  StepOutput out;
  optimizer.zero_grad();
  if (!image.defined()) {
    // An empty share: no loss, no gradients of its own; the all-reduce fills them in.
    out.loss = torch::zeros({}, torch::kFloat);
    out.iteration_losses = torch::zeros({0}, torch::kFloat);
    out.dice_parts = torch::zeros({2}, torch::kDouble);
    out.dice = out.dice_parts[0] / out.dice_parts[1];
  } else {
    out = forward_backward(model, image, target, s, clicks, scaler, perturb);
  }
  apply_gradients(out, optimizer, scaler, s, sync_gradients);
  return out;
}

}  // namespace msam::train
