// The click-driven refinement loop of M-SAM (reference `interaction`): click 1 on the target,
// each later click on the errors of the previous prediction, the previous low-res logits fed
// back as the mask prompt. Training, evaluation and a person's clicks run this one loop; only
// the source of the clicks differs.
#pragma once
#include <torch/types.h>

#include <functional>
#include <vector>

#include "msam/interaction/click.h"
#include "msam/interaction/click_sampler.h"
#include "msam/interaction/mask_perturbation.h"
#include "msam/interaction/mirroring.h"
#include "msam/model/msam.h"

namespace msam::interaction {

struct RefinementOptions {
  int64_t iterations = 11;
  ClickProtocol protocol = ClickProtocol::kRandom;  // of simulated clicks
  bool multi_click = false;  // feed all clicks so far instead of only the newest
  double threshold = kReferenceClickThreshold;  // the mask whose errors the next click corrects
};

// The click of iteration `index` (0-based) for every sample (B×1×3, B×1), given the previous
// iteration's full-size logits (B×1×S³; all zeros before the first).
using ClickSource = std::function<Clicks(int64_t index, const torch::Tensor& prev_logits)>;

// A simulated annotator: each click from the errors of `prev_logits > options.threshold`
// against `target` (B×1×S³, > 0 = foreground) by `options.protocol`, drawn from `generator`;
// `share`: the samples are one rank's part of a larger batch (see BatchShare).
ClickSource simulated_clicks(const torch::Tensor& target, const RefinementOptions& options,
                             torch::Generator& generator, BatchShare share = {});
// The same annotator with every click's draws made up front (draw_click_uniforms:
// iterations × draws_per_click × B): the clicks equal the generator's above.
ClickSource simulated_clicks(const torch::Tensor& target, const RefinementOptions& options,
                             const torch::Tensor& uniforms);
// Given clicks, one per iteration (each B×1×3, B×1): a script, or a person's clicks.
ClickSource given_clicks(std::vector<Clicks> clicks);

struct IterationResult {
  int64_t index = 0;     // 0-based iteration
  torch::Tensor logits;  // B×1×S³ full-size logits (trilinear upsampling of low_res)
  torch::Tensor low_res; // B×1×(4g)³ logits, the next iteration's mask prompt
  Clicks click;          // this iteration's click (B×1×3, B×1)
};

// Runs `options.iterations` iterations for a batch whose per-volume work is in `ctx`, the
// clicks from `source`. `on_iteration` sees every iteration's result (the trainer adds its
// loss, the evaluator its metrics). Gradients flow through the whole loop, as in the reference
// (the fed-back logits are not detached); clicks are placed without gradient. `perturb`, when
// given (training: loop.mask_perturbation), changes the previous prediction before each click
// after the first; the click is placed on, and the model prompted with, the changed one.
void run_refinement(model::MSAM& model, const model::VolumeContext& ctx,
                    const RefinementOptions& options, const ClickSource& source,
                    const std::function<void(const IterationResult&)>& on_iteration,
                    const MaskPerturbation& perturb = {});
// The same loop with each click run on every view of the volume (mirroring.h).
void run_refinement(model::MSAM& model, const VolumeViews& views,
                    const RefinementOptions& options, const ClickSource& source,
                    const std::function<void(const IterationResult&)>& on_iteration,
                    const MaskPerturbation& perturb = {});

}  // namespace msam::interaction
