// Click protocols of the refinement loop (docs/design.md §3.2), batched on the tensors' device:
// one draw per sample from a torch::Generator, no host round trip per sample.
#pragma once
#include <torch/torch.h>

#include "msam/interaction/click.h"

namespace msam::interaction {

// Error regions of the previous prediction against the target, each B×1×D×H×W bool.
// The prediction is `prev_logits > threshold`; the reference uses 0.5 on the *logits*
// (kReferenceClickThreshold), not on the sigmoid.
struct ErrorRegions {
  torch::Tensor false_negative;  // target and not predicted
  torch::Tensor false_positive;  // predicted and not target
};
ErrorRegions error_regions(const torch::Tensor& prev_logits, const torch::Tensor& target,
                           double threshold = kReferenceClickThreshold);

// The samples of a batch that one rank of a data-parallel job holds: `offset` into a global
// batch of `global` samples (0 = this is the whole batch). Every random draw is made for the
// whole batch and this share's part kept, so the ranks together place exactly one process's
// clicks and their generators stay in step.
struct BatchShare {
  int64_t offset = 0;
  int64_t global = 0;
};

// n uniform draws in [0, 1) (double) on `device` for this share's samples: drawn for the whole
// batch from `generator` and this share's part kept.
torch::Tensor batch_uniforms(int64_t n, torch::Generator& generator, const torch::Device& device,
                             const BatchShare& share);

// Flat voxel index, B, of a uniform draw among each sample's candidate voxels (B×…, bool;
// a sample without candidates gets index 0).
torch::Tensor uniform_voxel(const torch::Tensor& candidates, torch::Generator& generator,
                            const BatchShare& share);
// The same for given draws `u` (B, double in [0, 1), on the candidates' device).
torch::Tensor uniform_voxel(const torch::Tensor& candidates, const torch::Tensor& u);

// How many uniform draws per sample one click of `protocol` takes: fnfp5050 draws the region
// (FN or FP), then every protocol draws the voxel.
int64_t draws_per_click(ClickProtocol protocol);
// The draws of `clicks` consecutive clicks, clicks × draws_per_click × n (double, on `device`),
// in the order sample_clicks makes them from `generator`: drawing them up front places the
// same clicks as drawing each click's when it is placed. Training draws a step's clicks so,
// in one transfer, and so that a captured step (train/step_graph.h) can read them from a
// buffer.
torch::Tensor draw_click_uniforms(int64_t clicks, int64_t n, ClickProtocol protocol,
                                  torch::Generator& generator, const torch::Device& device,
                                  const BatchShare& share);

// The next click for every sample. `prev_logits` and `target` are B×1×D×H×W (target > 0 is
// foreground); iteration 1 passes all-zero logits, so the error region is the foreground.
//   random   : uniform over FN ∪ FP (reference `get_next_click3D_torch_2`)
//   fnfp5050 : FN or FP with probability 1/2 (the other one when that is empty), then uniform
//   center   : uniform among the voxels farthest from the boundary of their error region
//              (the centre of the thickest error component), see boundary_distance
// Label = 1 for a FN voxel, 0 for a FP voxel. A sample without errors (where the reference
// would fail on an empty choice) gets a uniform foreground voxel with label 1; an empty
// target and an empty prediction give a uniform voxel with label 0.
Clicks sample_clicks(const torch::Tensor& prev_logits, const torch::Tensor& target,
                     ClickProtocol protocol, torch::Generator& generator,
                     double threshold = kReferenceClickThreshold, BatchShare share = {});
// The same with this click's draws given, draws_per_click × B (a row of draw_click_uniforms).
// No host synchronisation except the center protocol's (boundary_distance).
Clicks sample_clicks(const torch::Tensor& prev_logits, const torch::Tensor& target,
                     ClickProtocol protocol, const torch::Tensor& uniforms,
                     double threshold = kReferenceClickThreshold);

// multi_click mode: the clicks so far with `newest` appended along N. An empty `history`
// (undefined tensors) gives `newest`.
Clicks append_clicks(const Clicks& history, const Clicks& newest);

// Per-voxel distance to the region's boundary, B×1×D×H×W float (0 outside `region`), for
// a bool region B×1×D×H×W; voxels outside the volume count as outside the region.
// Computed on the region's device by iterated erosion alternating the 6- and
// 26-neighbourhood: the octagonal distance in voxel steps (a voxel touching the outside is
// at 1), a cheap approximation of the Euclidean one that is exact for axis-aligned boxes.
// Only the box around the region is eroded (over all samples at once): for a lesion's error
// region in a 64³ crop that is 10× faster than the whole volume, and boolean shifts instead of
// max-pooling a float mask are 16× faster again on a CPU (a 27-voxel-radius lesion's first
// click: 36 ms instead of 594). Host syncs: one to find the box, one per erosion step, none
// per sample.
torch::Tensor boundary_distance(const torch::Tensor& region);

}  // namespace msam::interaction
