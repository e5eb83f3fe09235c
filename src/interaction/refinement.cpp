#include "msam/interaction/refinement.h"

#include <torch/torch.h>

#include "msam/common/error.h"
#include "msam/interaction/click_sampler.h"

namespace msam::interaction {

ClickSource simulated_clicks(const torch::Tensor& target, const RefinementOptions& options,
                             torch::Generator& generator, BatchShare share) {
  return [target, options, &generator, share](int64_t, const torch::Tensor& prev_logits) {
    return sample_clicks(prev_logits, target, options.protocol, generator, options.threshold,
                         share);
  };
}

ClickSource simulated_clicks(const torch::Tensor& target, const RefinementOptions& options,
                             const torch::Tensor& uniforms) {
  if (uniforms.dim() != 3 || uniforms.size(0) < options.iterations)
    throw Error("refinement: " + std::to_string(options.iterations) +
                " iterations need that many clicks' uniform draws, got " +
                c10::str(uniforms.sizes()));
  return [target, options, uniforms](int64_t index, const torch::Tensor& prev_logits) {
    return sample_clicks(prev_logits, target, options.protocol, uniforms[index],
                         options.threshold);
  };
}

ClickSource given_clicks(std::vector<Clicks> clicks) {
  return [clicks = std::move(clicks)](int64_t index, const torch::Tensor&) {
    if (index >= static_cast<int64_t>(clicks.size()))
      throw Error("refinement: iteration " + std::to_string(index + 1) + " has no click (" +
                  std::to_string(clicks.size()) + " given)");
    return clicks[static_cast<size_t>(index)];
  };
}

void run_refinement(model::MSAM& model, const model::VolumeContext& ctx,
                    const RefinementOptions& options, const ClickSource& source,
                    const std::function<void(const IterationResult&)>& on_iteration,
                    const MaskPerturbation& perturb) {
  run_refinement(model, single_view(ctx), options, source, on_iteration, perturb);
}

void run_refinement(model::MSAM& model, const VolumeViews& views,
                    const RefinementOptions& options, const ClickSource& source,
                    const std::function<void(const IterationResult&)>& on_iteration,
                    const MaskPerturbation& perturb) {
  const auto& embedding = views.front().context.image_embedding;
  const int64_t B = embedding.size(0), r = model->config().low_res_size(),
                S = model->config().encoder.img_size;
  const auto opts = embedding.options();
  // The reference starts from an all-zero prediction and an all-zero low-res prompt.
  torch::Tensor logits = torch::zeros({B, 1, S, S, S}, opts);
  torch::Tensor low_res = torch::zeros({B, 1, r, r, r}, opts);
  Clicks history;
  for (int64_t i = 0; i < options.iterations; ++i) {
    if (perturb && i > 0) {
      low_res = perturb(i, low_res);
      logits = model->upsample(low_res);
    }
    Clicks click;
    {
      torch::NoGradGuard no_grad;
      click = source(i, logits.detach());
    }
    history = options.multi_click ? append_clicks(history, click) : click;
    low_res = click_views(model, views, history, low_res);
    logits = model->upsample(low_res);
    on_iteration(IterationResult{i, logits, low_res, click});
  }
}

}  // namespace msam::interaction
