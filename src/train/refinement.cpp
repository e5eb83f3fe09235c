#include "msam/train/refinement.h"

#include <torch/torch.h>

namespace msam::train {

void run_refinement(model::MSAM& model, const model::VolumeContext& ctx,
                    const torch::Tensor& target, const RefinementOptions& options,
                    torch::Generator& generator,
                    const std::function<void(const IterationResult&)>& on_iteration) {
  const int64_t B = target.size(0), r = model->config().low_res_size();
  const auto opts = target.options().dtype(ctx.image_embedding.scalar_type());
  // The reference starts from an all-zero prediction and an all-zero low-res prompt.
  torch::Tensor logits = torch::zeros(target.sizes(), opts);
  torch::Tensor low_res = torch::zeros({B, 1, r, r, r}, opts);
  Clicks history;
  for (int64_t i = 0; i < options.iterations; ++i) {
    Clicks click;
    {
      torch::NoGradGuard no_grad;
      click = sample_clicks(logits.detach(), target, options.protocol, generator,
                            options.threshold);
    }
    history = options.multi_click ? append_clicks(history, click) : click;
    auto pred = model->click(ctx, history.points, history.labels, low_res);
    low_res = pred.low_res_masks;
    logits = model->upsample(low_res);
    on_iteration(IterationResult{i, logits, low_res, click});
  }
}

}  // namespace msam::train
