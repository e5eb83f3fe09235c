// Test-time mirroring: the model run on a volume's mirror images beside the volume itself, each
// click's low-res logits the mean of the views' logits mapped back (nnU-Net's test-time
// "mirroring"). Training flips every crop along each axis at random (data.random_flip), so each
// mirror image is as familiar to the model as the original, and the mean evens out the part of
// its errors that depends on the orientation. It costs one encoder pass per view per volume and
// one click per view per click (with CUDA graphs, the view's context copied in at each click).
#pragma once
#include <torch/types.h>

#include <vector>

#include "msam/interaction/click.h"
#include "msam/model/msam.h"

namespace msam::interaction {

// The volume as the model sees it in one view, encoded once.
struct VolumeView {
  model::VolumeContext context;
  // The spatial tensor dims (2, 3, 4 of B×C×X×Y×Z) that the view mirrors; {} is the volume.
  std::vector<int64_t> mirrored_dims;
};
using VolumeViews = std::vector<VolumeView>;

// The volume alone: clicks on it are model->click, op for op.
VolumeViews single_view(const model::VolumeContext& ctx);
// image: B×1×S³. With `mirror` the 8 views that mirror every subset of the three axes, else the
// volume alone.
VolumeViews encode_views(model::MSAM& model, const torch::Tensor& image, bool mirror);

// One click on every view, the clicks (B×N×3 voxel indices) and the previous low-res logits
// (B×1×r³) mirrored into it and its low-res logits mirrored back: their mean.
torch::Tensor click_views(model::MSAM& model, const VolumeViews& views, const Clicks& clicks,
                          const torch::Tensor& low_res);

}  // namespace msam::interaction
