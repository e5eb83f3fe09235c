#include "msam/interaction/mirroring.h"

#include <torch/torch.h>

namespace msam::interaction {
namespace {

// Voxel index i along a mirrored axis of size S is S - 1 - i: the voxel centres (i + 0.5) / S
// that the prompt encoder embeds map onto 1 - (i + 0.5) / S, as the image does.
torch::Tensor mirror_points(const torch::Tensor& points, const std::vector<int64_t>& dims,
                            int64_t size) {
  if (dims.empty()) return points;
  auto out = points.clone();
  for (auto d : dims) {
    auto axis = out.select(2, d - 2);
    axis.copy_(size - 1 - axis);
  }
  return out;
}

torch::Tensor mirror(const torch::Tensor& volume, const std::vector<int64_t>& dims) {
  return dims.empty() ? volume : volume.flip(dims);
}

}  // namespace

VolumeViews single_view(const model::VolumeContext& ctx) { return {VolumeView{ctx, {}}}; }

VolumeViews encode_views(model::MSAM& model, const torch::Tensor& image, bool mirror_axes) {
  VolumeViews views;
  const int subsets = mirror_axes ? 8 : 1;
  for (int s = 0; s < subsets; ++s) {
    std::vector<int64_t> dims;
    for (int64_t a = 0; a < 3; ++a)
      if (s & (1 << a)) dims.push_back(2 + a);
    views.push_back({model->encode(mirror(image, dims)), dims});
  }
  return views;
}

torch::Tensor click_views(model::MSAM& model, const VolumeViews& views, const Clicks& clicks,
                          const torch::Tensor& low_res) {
  const int64_t size = model->config().encoder.img_size;
  torch::Tensor sum;
  for (const auto& [context, dims] : views) {
    auto pred = model->click(context, mirror_points(clicks.points, dims, size), clicks.labels,
                             mirror(low_res, dims));
    auto back = mirror(pred.low_res_masks, dims);
    sum = sum.defined() ? sum + back : back;
  }
  return views.size() == 1 ? sum : sum / static_cast<double>(views.size());
}

}  // namespace msam::interaction
