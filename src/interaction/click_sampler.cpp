#include "msam/interaction/click_sampler.h"

#include "msam/common/error.h"

namespace msam::interaction {

namespace {

void check_volumes(const torch::Tensor& prev_logits, const torch::Tensor& target) {
  if (prev_logits.dim() != 5 || prev_logits.size(1) != 1)
    throw Error("click sampling: previous logits must be B×1×D×H×W, got " +
                c10::str(prev_logits.sizes()));
  if (target.sizes() != prev_logits.sizes())
    throw Error("click sampling: target " + c10::str(target.sizes()) +
                " and previous logits " + c10::str(prev_logits.sizes()) + " differ in shape");
}

// Per sample: `primary` where it has a voxel, else `fallback`.
torch::Tensor unless_empty(const torch::Tensor& primary, const torch::Tensor& fallback) {
  const auto has = primary.flatten(1).any(1).view({-1, 1, 1, 1, 1});
  return torch::where(has, primary, fallback);
}

// Draws made on the generator's device, moved to `device`: to a GPU through pinned memory and
// an asynchronous copy, so that sampling a click never waits for the GPU's queue.
torch::Tensor draws_to(const torch::Tensor& u, const torch::Device& device) {
  if (u.device() == device) return u;
  if (u.is_cpu() && device.is_cuda()) return u.pin_memory().to(device, /*non_blocking=*/true);
  return u.to(device);
}

}  // namespace

// Drawn on the generator's device, then moved to `device`: the same seed gives the same
// clicks on the CPU and on a GPU.
torch::Tensor batch_uniforms(int64_t n, torch::Generator& generator, const torch::Device& device,
                             const BatchShare& share) {
  auto u = share.global > 0
               ? torch::rand({share.global}, generator,
                             torch::dtype(torch::kDouble).device(generator.device()))
                     .narrow(0, share.offset, n)
               : torch::rand({n}, generator,
                             torch::dtype(torch::kDouble).device(generator.device()));
  return draws_to(u, device);
}

// The k-th candidate with k uniform in [0, count), found by binary search in the cumsum.
torch::Tensor uniform_voxel(const torch::Tensor& candidates, torch::Generator& generator,
                            const BatchShare& share) {
  return uniform_voxel(candidates,
                       batch_uniforms(candidates.size(0), generator, candidates.device(), share));
}

torch::Tensor uniform_voxel(const torch::Tensor& candidates, const torch::Tensor& u) {
  const auto cum = candidates.flatten(1).to(torch::kLong).cumsum(1);
  const auto count = cum.select(1, -1);
  const auto k = torch::minimum((u * count.to(torch::kDouble)).floor().to(torch::kLong),
                                count - 1);
  return torch::searchsorted(cum, (k + 1).unsqueeze(1)).squeeze(1);
}

namespace {

// Voxels of `mask` whose two neighbours along `dim` are in it too; the outside of the tensor
// counts as outside, as the outside of the volume does.
torch::Tensor erode_along(const torch::Tensor& mask, int64_t dim) {
  const int64_t n = mask.size(dim);
  auto eroded = mask.clone();
  eroded.narrow(dim, 0, 1).fill_(false);
  eroded.narrow(dim, n - 1, 1).fill_(false);
  if (n > 2) {
    eroded.narrow(dim, 1, n - 2).logical_and_(mask.narrow(dim, 0, n - 2));
    eroded.narrow(dim, 1, n - 2).logical_and_(mask.narrow(dim, 2, n - 2));
  }
  return eroded;
}

}  // namespace

ErrorRegions error_regions(const torch::Tensor& prev_logits, const torch::Tensor& target,
                           double threshold) {
  check_volumes(prev_logits, target);
  const auto predicted = prev_logits > threshold;
  const auto truth = target > 0;
  return {truth.logical_and(predicted.logical_not()),
          predicted.logical_and(truth.logical_not())};
}

torch::Tensor boundary_distance(const torch::Tensor& region) {
  if (region.dim() != 5 || region.size(1) != 1)
    throw Error("boundary_distance: region must be B×1×D×H×W, got " + c10::str(region.sizes()));
  auto distance = torch::zeros(region.sizes(), region.options().dtype(torch::kFloat));
  // Erode only the box around the region (over every sample): voxels outside it are outside
  // the region anyway, so the padding below treats them the same, and a lesion's error region
  // is a small part of the volume (the first click's, the whole lesion, needs the most steps).
  const auto occupied = region.any(0).any(0);  // D×H×W: in the region of some sample
  // The three axis profiles of `occupied`, end to end, in one transfer to the host.
  const auto profiles = torch::cat({occupied.any(2).any(1), occupied.any(2).any(0),
                                    occupied.any(1).any(0)})
                            .to(torch::kCPU);
  const auto* on = profiles.data_ptr<bool>();
  int64_t lo[3], len[3];
  for (int d = 0; d < 3; ++d) {
    const int64_t n = region.size(2 + d);
    int64_t first = 0, last = n - 1;
    while (first < n && !on[first]) ++first;
    if (first == n) return distance;
    while (!on[last]) --last;
    lo[d] = first;
    len[d] = last + 1 - first;
    on += n;
  }
  auto box = [&](const torch::Tensor& t) {
    return t.narrow(2, lo[0], len[0]).narrow(3, lo[1], len[1]).narrow(4, lo[2], len[2]);
  };
  auto inside = box(region).clone();
  auto box_distance = torch::zeros(inside.sizes(), distance.options());
  bool cube = false;
  while (inside.any().item<bool>()) {
    box_distance += inside;
    // Boolean shifts rather than max-pooling a float mask: same sets, far faster on a CPU.
    inside = cube ? erode_along(erode_along(erode_along(inside, 2), 3), 4)
                  : erode_along(inside, 2).logical_and_(erode_along(inside, 3))
                        .logical_and_(erode_along(inside, 4));
    cube = !cube;
  }
  box(distance).copy_(box_distance);
  return distance;
}

int64_t draws_per_click(ClickProtocol protocol) {
  return protocol == ClickProtocol::kFnFp5050 ? 2 : 1;
}

torch::Tensor draw_click_uniforms(int64_t clicks, int64_t n, ClickProtocol protocol,
                                  torch::Generator& generator, const torch::Device& device,
                                  const BatchShare& share) {
  if (share.global > 0 && (share.offset < 0 || share.offset + n > share.global))
    throw Error("click sampling: a share of " + std::to_string(n) + " samples at offset " +
                std::to_string(share.offset) + " does not lie in a batch of " +
                std::to_string(share.global));
  std::vector<torch::Tensor> draws;
  for (int64_t i = 0; i < clicks * draws_per_click(protocol); ++i)
    draws.push_back(batch_uniforms(n, generator, generator.device(), share));
  return draws_to(torch::stack(draws).view({clicks, draws_per_click(protocol), n}), device);
}

Clicks sample_clicks(const torch::Tensor& prev_logits, const torch::Tensor& target,
                     ClickProtocol protocol, torch::Generator& generator, double threshold,
                     BatchShare share) {
  return sample_clicks(
      prev_logits, target, protocol,
      draw_click_uniforms(1, target.size(0), protocol, generator, target.device(), share)[0],
      threshold);
}

Clicks sample_clicks(const torch::Tensor& prev_logits, const torch::Tensor& target,
                     ClickProtocol protocol, const torch::Tensor& uniforms, double threshold) {
  if (uniforms.dim() != 2 || uniforms.size(0) != draws_per_click(protocol) ||
      uniforms.size(1) != target.size(0))
    throw Error("click sampling: expected " + std::to_string(draws_per_click(protocol)) + "×" +
                std::to_string(target.size(0)) + " uniform draws, got " +
                c10::str(uniforms.sizes()));
  const auto errors = error_regions(prev_logits, target, threshold);
  const auto& fn = errors.false_negative;
  const auto& fp = errors.false_positive;
  const int64_t B = target.size(0);

  torch::Tensor region;
  switch (protocol) {
    case ClickProtocol::kRandom:
      region = fn.logical_or(fp);
      break;
    case ClickProtocol::kFnFp5050: {
      // Reference: `np.random.random() > 0.5` picks FN.
      const auto fn_first = (uniforms[0] > 0.5).view({-1, 1, 1, 1, 1});
      region = torch::where(fn_first, unless_empty(fn, fp), unless_empty(fp, fn));
      break;
    }
    case ClickProtocol::kCenter: {
      // FN and FP are separate regions: their common border is a boundary too.
      const auto both = boundary_distance(torch::cat({fn, fp}, 0));
      const auto distance = both.slice(0, 0, B) + both.slice(0, B, 2 * B);
      const auto farthest = distance.flatten(1).amax(1).view({-1, 1, 1, 1, 1});
      region = distance.eq(farthest).logical_and(farthest > 0);
      break;
    }
  }
  // No error: a foreground voxel (label 1); no foreground either: any voxel (label 0).
  const auto truth = target > 0;
  const auto candidates = unless_empty(unless_empty(region, truth), torch::ones_like(truth));
  const auto index = uniform_voxel(candidates, uniforms[draws_per_click(protocol) - 1]);

  const int64_t H = target.size(3), W = target.size(4);
  const auto d = index.div(H * W, "floor");
  const auto h = index.div(W, "floor").remainder(H);
  const auto w = index.remainder(W);
  // Inside FN ∪ FP the label "is FN" equals "is foreground"; so it does in the fallbacks.
  const auto labels = truth.flatten(1).gather(1, index.unsqueeze(1)).to(torch::kLong);
  return {torch::stack({d, h, w}, 1).unsqueeze(1), labels};
}

Clicks append_clicks(const Clicks& history, const Clicks& newest) {
  if (!history.points.defined()) return newest;
  return {torch::cat({history.points, newest.points}, 1),
          torch::cat({history.labels, newest.labels}, 1)};
}

}  // namespace msam::interaction
