// Clicks: the one prompt type of M-SAM, whoever places them (a simulated annotator in training
// and evaluation, a person in `msam segment` and `msam serve`).
#pragma once
#include <torch/types.h>

#include <vector>

#include "msam/data/geometry_ops.h"
#include "msam/interaction/click_protocol.h"

namespace msam::interaction {

// SAM point labels.
constexpr int kBackground = 0;
constexpr int kForeground = 1;

// One click at a voxel index (x, y, z) of the (X, Y, Z) array the model sees, which is the
// (d, h, w) of the reference's tensors.
struct Click {
  data::Index3 voxel{0, 0, 0};
  int label = kForeground;
};

// Clicks of a batch as the model takes them: points B×N×3 (long, voxel index) and labels B×N
// (long).
struct Clicks {
  torch::Tensor points;
  torch::Tensor labels;
};

// Clicks {c_0..c_{n-1}} of one volume as a batch of one (1×n×3, 1×n) on `device`.
Clicks to_batch(const std::vector<Click>& clicks, const torch::Device& device);
// Sample `b`'s clicks of a batch, back on the host.
std::vector<Click> from_batch(const Clicks& clicks, int64_t b = 0);

}  // namespace msam::interaction
