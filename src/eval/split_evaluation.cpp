#include "msam/eval/split_evaluation.h"

#include <cstdio>
#include <filesystem>

#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/data/preprocess.h"

namespace fs = std::filesystem;

namespace msam::eval {

SplitEvalOptions split_eval_options(const RunSettings& run, const EvalOptions& clicks,
                                    const std::string& protocol) {
  SplitEvalOptions o;
  o.eval = clicks;
  o.eval.protocol = interaction::parse_click_protocol(protocol, "--protocol");
  o.eval.amp_dtype = run.amp_dtype;
  o.device = run.device;
  return o;
}

SplitScores evaluate_split(model::MSAM& model, const std::vector<std::string>& entries,
                           const SplitEvalOptions& o, const SplitEvalHooks& hooks) {
  if (entries.empty()) throw Error("evaluation: the chosen split has no cases");
  if (o.save_masks && !hooks.write_mask)
    throw Error("saving masks needs a build with ITK (image IO)");
  const auto original = o.original_grid ? hooks.original_label : OriginalLabelReader{};
  if (o.original_grid && !original)
    spdlog::warn(
        "evaluation: no reader for the original labels (a build without ITK): scoring in the "
        "crop only");

  SplitScores out;
  out.columns.clicks = o.eval.clicks;
  out.columns.original = static_cast<bool>(original);
  out.columns.seconds = true;
  const size_t rank = o.group ? static_cast<size_t>(o.group->rank()) : 0;
  const size_t world = o.group ? static_cast<size_t>(o.group->size()) : 1;
  // Every case's clicks come from its own seed, so which rank scores it does not matter.
  std::vector<std::pair<size_t, CaseScores>> mine;
  for (size_t i = rank; i < entries.size(); i += world) {
    const auto c = data::read_cache_entry(entries[i]);
    auto r = evaluate_case(model, c, o.eval, o.device, original);
    const auto& s = r.scores;
    if (o.save_masks) {
      // masks/<dataset>/<case>.nii.gz: a folder msam eval --predictions reads back.
      const auto path = fs::path(o.out_dir) / "masks" / (s.case_id + ".nii.gz");
      fs::create_directories(path.parent_path());
      hooks.write_mask(path.string(), data::restore_to_original(r.mask, c.info.record));
    }
    if (static_cast<int>(i) < o.overlays) write_case_overlay(o.out_dir, c, r.mask, r.clicks);
    char line[256];
    std::snprintf(line, sizeof line, "[%zu/%zu] %s  Dice@1 %.4f  Dice@%lld %.4f  (%.1f s)", i + 1,
                  entries.size(), s.case_id.c_str(), s.dice_per_click.front(),
                  static_cast<long long>(s.dice_per_click.size()), s.dice_per_click.back(),
                  s.seconds);
    spdlog::info(line);
    mine.emplace_back(i, std::move(r.scores));
  }
  if (o.group) {
    nlohmann::json part = nlohmann::json::array();
    for (const auto& [i, scores] : mine) part.push_back({i, to_json(scores)});
    std::vector<std::optional<CaseScores>> all(entries.size());
    for (const auto& text : o.group->all_gather(part.dump(), "gathering the cases' scores"))
      for (const auto& item : nlohmann::json::parse(text))
        all.at(item.at(0).get<size_t>()) = case_scores_from_json(item.at(1));
    for (auto& scores : all) out.cases.push_back(std::move(*scores));
    if (!o.group->is_main()) return out;
  } else {
    for (auto& [i, scores] : mine) out.cases.push_back(std::move(scores));
  }
  write_split_report(o.out_dir, out,
                     {{"clicks", o.eval.clicks},
                      {"protocol", interaction::name(o.eval.protocol)},
                      {"multi_click", o.eval.multi_click},
                      {"threshold_on_logits", o.eval.threshold},
                      {"nsd_tolerance_mm", o.eval.nsd_tolerance_mm},
                      {"seed", o.eval.seed},
                      {"mirror", o.eval.mirror},
                      {"checkpoint", o.model_name}});
  return out;
}

}  // namespace msam::eval
