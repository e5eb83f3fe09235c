// The click-driven refinement loop of M-SAM (reference `interaction`): click 1 from the
// target's foreground, each later click from the error region of the previous prediction,
// the previous low-res logits fed back as the mask prompt. Training and evaluation share it.
#pragma once
#include <torch/types.h>

#include <functional>

#include "msam/model/msam.h"
#include "msam/train/click_sampler.h"
#include "msam/train/config.h"

namespace msam::train {

struct RefinementOptions {
  int64_t iterations = 11;
  ClickProtocol protocol = ClickProtocol::kRandom;
  bool multi_click = false;
  double threshold = kReferenceClickThreshold;
};

struct IterationResult {
  int64_t index = 0;     // 0-based iteration
  torch::Tensor logits;  // B×1×S³ full-size logits (trilinear upsampling of low_res)
  torch::Tensor low_res; // B×1×(4g)³ logits, the next iteration's mask prompt
  Clicks click;          // the click sampled for this iteration (B×1×3, B×1)
};

// Runs `options.iterations` iterations for a batch whose per-volume work is in `ctx`.
// `target` is B×1×S³ (> 0 = foreground). `on_iteration` sees every iteration's result (the
// trainer adds its loss, the evaluator its metrics). Gradients flow through the whole loop,
// as in the reference (the fed-back logits are not detached).
void run_refinement(model::MSAM& model, const model::VolumeContext& ctx,
                    const torch::Tensor& target, const RefinementOptions& options,
                    torch::Generator& generator,
                    const std::function<void(const IterationResult&)>& on_iteration);

}  // namespace msam::train
