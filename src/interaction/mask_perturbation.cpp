#include "msam/interaction/mask_perturbation.h"

#include <torch/torch.h>

#include <array>
#include <vector>

#include "msam/common/error.h"
#include "msam/common/shape.h"

namespace msam::interaction {

MaskPerturbation ball_perturbation(double probability, double threshold,
                                   torch::Generator& generator, BatchShare share) {
  if (!(probability >= 0 && probability <= 1))
    throw Error("mask perturbation: the probability must be in [0, 1], got " +
                std::to_string(probability));
  return [probability, threshold, &generator, share](int64_t, const torch::Tensor& low_res) {
    if (low_res.dim() != 5 || low_res.size(1) != 1 || low_res.size(2) != low_res.size(3) ||
        low_res.size(2) != low_res.size(4))
      throw Error("mask perturbation: low-res logits must be B×1×r×r×r, got " +
                  shape_str(low_res.sizes()));
    const int64_t B = low_res.size(0), r = low_res.size(2);
    const auto device = low_res.device();
    auto draw = [&] { return batch_uniforms(B, generator, device, share); };
    const auto apply = draw() < probability;
    const auto hole = draw() < 0.5;
    const auto radius = static_cast<double>(r) / 16 + draw() * (static_cast<double>(r) / 6 -
                                                                 static_cast<double>(r) / 16);
    std::array<torch::Tensor, 3> anywhere;
    for (auto& c : anywhere) c = (draw() * r).floor();
    const auto predicted = low_res.detach() > threshold;
    const auto voxel = uniform_voxel(predicted, generator, share);  // flat index in r³
    const auto has_prediction = predicted.flatten(1).any(1);
    const std::array<torch::Tensor, 3> inside = {
        torch::div(voxel, r * r, "floor"), torch::div(voxel, r, "floor").remainder(r),
        voxel.remainder(r)};
    const auto is_hole = hole.logical_and(has_prediction);
    const auto grid = torch::arange(r, torch::dtype(torch::kDouble).device(device));
    torch::Tensor dist2 = torch::zeros({B, 1, r, r, r}, grid.options());
    for (int a = 0; a < 3; ++a) {
      const auto centre = torch::where(is_hole, inside[a].to(torch::kDouble), anywhere[a]);
      std::vector<int64_t> shape = {B, 1, 1, 1, 1};
      shape[2 + a] = r;
      dist2 = dist2 + (grid.view({1, r}) - centre.view({B, 1})).pow(2).view(shape);
    }
    const auto ball =
        (dist2 <= radius.pow(2).view({B, 1, 1, 1, 1})).logical_and(apply.view({B, 1, 1, 1, 1}));
    const auto value = torch::where(is_hole, torch::full({B}, threshold - 4, grid.options()),
                                    torch::full({B}, threshold + 4, grid.options()))
                           .to(low_res.scalar_type())
                           .view({B, 1, 1, 1, 1});
    return torch::where(ball, value, low_res);
  };
}

}  // namespace msam::interaction
