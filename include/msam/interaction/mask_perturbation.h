// Training augmentation of the refinement loop (`loop.mask_perturbation`): before the click of
// an iteration after the first, with the given probability per sample, a ball of the previous
// prediction's low-res logits becomes confidently wrong: foreground anywhere in the volume (a
// false-positive region) or background around a predicted voxel (a hole). The click of that
// iteration is placed on the perturbed mask's errors and the model takes the perturbed logits
// as its mask prompt, so it learns to remove or fill whole regions at a click. On its own
// training cases a model soon predicts well at the first click, and the later clicks it sees
// are small boundary corrections; on an unseen scan the errors a click must correct are often
// whole regions (bright tissue taken for tumour), which it has then never been taught to undo.
#pragma once
#include <torch/types.h>

#include <functional>

#include "msam/interaction/click_sampler.h"

namespace msam::interaction {

// Iteration index (0-based) and the previous low-res logits B×1×r³ → the logits to use instead.
using MaskPerturbation =
    std::function<torch::Tensor(int64_t index, const torch::Tensor& low_res)>;

// Balls of radius r/16 to r/6 low-res voxels (r the grid edge), set to `threshold` ± 4 (a
// logit); false-positive and hole with probability 1/2 each (a hole needs a predicted voxel,
// else it is a false positive). Every draw is made for the whole batch from `generator`
// (BatchShare), so data-parallel ranks perturb exactly as one process does.
MaskPerturbation ball_perturbation(double probability, double threshold,
                                   torch::Generator& generator, BatchShare share = {});

}  // namespace msam::interaction
