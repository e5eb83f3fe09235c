// Segmentation losses on logits (B×C×spatial) and a {0,1} target of the same shape, any
// dtype; differentiable in the logits. A shape mismatch is an msam::Error.
#pragma once
#include <ATen/ATen.h>

namespace msam::train {

// Soft Dice per (item, channel), MONAI DiceLoss(sigmoid=True, squared_pred=True, batch=False)
// with smooth_nr = smooth_dr = 1e-5 and p = sigmoid(logits), sums over the spatial dims:
//   1 − (2·Σ t·p + 1e-5) / (Σ t² + Σ p² + 1e-5).      Returns B×C.
at::Tensor soft_dice_loss_per_item(const at::Tensor& logits, const at::Tensor& target);

// The reference training loss: MONAI 1.2.0 DiceCELoss(sigmoid=True, squared_pred=True,
// reduction='mean'), i.e. mean soft Dice + MONAI 1.2's CE term. That CE term, with as many
// target channels as logit channels, is nn.CrossEntropyLoss over the channel dim with the
// target as class probabilities; for the one-channel models here log_softmax over a single
// channel is 0, so the term is identically 0 and the loss is the soft Dice alone (a reference
// slip, reproduced).
at::Tensor dice_ce_loss_monai12(const at::Tensor& logits, const at::Tensor& target);

// Mean binary cross-entropy with logits (what MONAI ≥ 1.3's DiceCELoss uses for one channel).
at::Tensor bce_with_logits_loss(const at::Tensor& logits, const at::Tensor& target);

// MONAI ≥ 1.3 DiceCELoss for one channel: mean soft Dice + mean BCE with logits.
at::Tensor dice_bce_loss(const at::Tensor& logits, const at::Tensor& target);

}  // namespace msam::train
