#include "msam/eval/session_evaluation.h"

#include <torch/torch.h>

#include <chrono>

#include "msam/common/error.h"
#include "msam/common/shape.h"
#include "msam/interaction/click_sampler.h"

namespace msam::eval {

SessionCaseResult evaluate_session_case(model::MSAM model, const SessionCase& c,
                                        const EvalOptions& options,
                                        interaction::SessionOptions session) {
  const auto t0 = std::chrono::steady_clock::now();
  if (options.mirror) throw Error(c.case_id + ": sessions do not mirror (--mirror)");
  if (!c.label.data.sizes().equals(c.scan.data.sizes()))
    throw Error(c.case_id + ": label of shape " + shape_str(c.label.data.sizes()) +
                " on a scan of shape " + shape_str(c.scan.data.sizes()));
  const auto gt = c.label.data.to(torch::kBool);
  if (!gt.any().item<bool>()) throw Error(c.case_id + ": the label is empty, nothing to click on");
  torch::NoGradGuard no_grad;
  model->eval();
  session.threshold = options.threshold;
  session.multi_click = options.multi_click;
  session.amp_dtype = options.amp_dtype;
  session.modality = c.modality == data::Modality::CT ? interaction::ScanModality::kCT
                                                      : interaction::ScanModality::kMR;
  interaction::Session s(model, c.scan, session);

  SessionCaseResult r;
  r.scores.case_id = c.case_id;
  const auto target = gt.to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  auto generator =
      torch::make_generator<at::CPUGeneratorImpl>(case_seed(options.seed, c.case_id));
  // The session's mask as 0/1 "logits" at threshold 0.5: its errors are the clicks' regions.
  auto shown = torch::zeros_like(target);
  for (int64_t k = 0; k < options.clicks; ++k) {
    const auto next = interaction::sample_clicks(shown, target, options.protocol, generator, 0.5);
    const auto p = next.points[0][0];
    const interaction::Click click{
        {p[0].item<int64_t>(), p[1].item<int64_t>(), p[2].item<int64_t>()},
        static_cast<int>(next.labels[0][0].item<int64_t>())};
    interaction::UserClick user;
    user.point = {static_cast<double>(click.voxel[0]), static_cast<double>(click.voxel[1]),
                  static_cast<double>(click.voxel[2])};
    user.label = click.label;
    s.add_click(user);
    r.clicks.push_back(click);
    const auto mask = s.mask().data.to(torch::kBool);
    r.scores.dice_per_click.push_back(dice_score(mask, gt));
    shown = mask.to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  }
  r.mask = s.mask();
  MetricOptions mo;
  const auto& sp = c.scan.geometry.spacing;
  mo.spacing = {sp[0], sp[1], sp[2]};
  mo.nsd_tolerance_mm = options.nsd_tolerance_mm;
  r.scores.original = compute_case_metrics(r.mask.data, c.label.data, mo);
  r.scores.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace msam::eval
