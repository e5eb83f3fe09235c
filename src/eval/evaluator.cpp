#include "msam/eval/evaluator.h"

#include <torch/torch.h>

#include <chrono>
#include <functional>

#include "msam/common/compat.h"
#include "msam/data/preprocess.h"
#include "msam/data/split.h"
#include "msam/interaction/refinement.h"

namespace msam::eval {

uint64_t case_seed(uint64_t seed, const std::string& case_id) {
  uint64_t s = seed ^ std::hash<std::string>{}(case_id);
  return data::splitmix64(s);
}

CaseResult evaluate_case(model::MSAM& model, const data::CachedCase& c, const EvalOptions& options,
                         const torch::Device& device, const OriginalLabelReader& original) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  model->eval();
  CaseResult r;
  auto& scores = r.scores;
  scores.case_id = c.info.case_id;
  auto image = c.image.to(torch::kFloat).unsqueeze(0).unsqueeze(0).to(device);
  auto gt = c.label.to(torch::kBool);
  auto target = c.label.to(torch::kFloat).unsqueeze(0).unsqueeze(0).to(device);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(case_seed(options.seed, scores.case_id));
  interaction::RefinementOptions ro{options.clicks, options.protocol, options.multi_click,
                                    options.threshold};
  compat::AutocastGuard amp(device, options.amp_dtype);
  const auto views = interaction::encode_views(model, image, options.mirror);
  torch::Tensor final_logits;
  interaction::run_refinement(
      model, views, ro, interaction::simulated_clicks(target, ro, gen),
      [&](const interaction::IterationResult& it) {
        auto pred = (it.logits[0][0] > options.threshold).to(torch::kCPU);
        scores.dice_per_click.push_back(dice_score(pred, gt));
        r.clicks.push_back(interaction::from_batch(it.click).front());
        final_logits = it.logits;
      });
  r.mask = (final_logits[0][0] > options.threshold).to(torch::kCPU).to(torch::kUInt8);
  MetricOptions mo;
  const auto& sp = c.info.record.patch_geometry.spacing;
  mo.spacing = {sp[0], sp[1], sp[2]};
  mo.nsd_tolerance_mm = options.nsd_tolerance_mm;
  scores.crop = compute_case_metrics(r.mask, c.label, mo);
  if (original) {
    auto restored = data::restore_to_original(r.mask, c.info.record);
    auto gt_orig = original(c.info);
    MetricOptions oo = mo;
    const auto& os = gt_orig.geometry.spacing;
    oo.spacing = {os[0], os[1], os[2]};
    scores.original = compute_case_metrics(restored.data, gt_orig.data, oo);
  }
  scores.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace msam::eval
