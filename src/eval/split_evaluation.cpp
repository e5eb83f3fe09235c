#include "msam/eval/split_evaluation.h"

#include <cstdio>
#include <filesystem>

#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/data/preprocess.h"
#include "msam/io/csv.h"

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

namespace {

// clicks/<case>.csv: each click as `msam segment --click x,y,z,fg|bg` takes it, and the Dice
// after it, so that a session can be replayed.
void write_session_clicks(const std::string& out_dir, const SessionCaseResult& r) {
  const auto path = fs::path(out_dir) / "clicks" / (case_file_name(r.scores.case_id) + ".csv");
  fs::create_directories(path.parent_path());
  io::CsvWriter csv(path.string(), {"click", "x", "y", "z", "label", "dice"});
  for (size_t k = 0; k < r.clicks.size(); ++k) {
    const auto& c = r.clicks[k];
    csv.add_row({std::to_string(k + 1), std::to_string(c.voxel[0]), std::to_string(c.voxel[1]),
                 std::to_string(c.voxel[2]), c.label == interaction::kForeground ? "fg" : "bg",
                 io::format_number(r.scores.dice_per_click[k])});
  }
  csv.close();
}

// masks/<dataset>/<case>.nii.gz, in the scan's geometry: a folder msam eval --predictions
// reads back.
void write_case_mask(const SplitEvalOptions& o, const SplitEvalHooks& hooks,
                     const std::string& case_id, const data::Volume& mask) {
  const auto path = fs::path(o.out_dir) / "masks" / (case_id + ".nii.gz");
  fs::create_directories(path.parent_path());
  hooks.write_mask(path.string(), mask);
}

// One case through a session: scored, its mask saved and overlaid, its clicks written.
CaseScores evaluate_session_entry(model::MSAM& model, const data::CacheEntryInfo& info, size_t i,
                                  const SplitEvalOptions& o, const SplitEvalHooks& hooks) {
  SessionCase c{info.case_id, hooks.read_scan(info), hooks.original_label(info), info.modality};
  auto session = o.session;
  session.device = o.device;
  auto r = evaluate_session_case(model, c, o.eval, session);
  if (o.save_masks) write_case_mask(o, hooks, info.case_id, r.mask);
  if (static_cast<int>(i) < o.overlays)
    write_scan_overlay(o.out_dir, info.case_id, c.scan, c.label, r.mask, r.clicks);
  write_session_clicks(o.out_dir, r);
  return std::move(r.scores);
}

// One case in its crop: scored, its mask pasted back and saved, overlaid.
CaseScores evaluate_crop_entry(model::MSAM& model, const std::string& entry, size_t i,
                               const SplitEvalOptions& o, const SplitEvalHooks& hooks,
                               const OriginalLabelReader& original) {
  const auto c = data::read_cache_entry(entry);
  auto r = evaluate_case(model, c, o.eval, o.device, original);
  if (o.save_masks)
    write_case_mask(o, hooks, r.scores.case_id, data::restore_to_original(r.mask, c.info.record));
  if (static_cast<int>(i) < o.overlays) write_case_overlay(o.out_dir, c, r.mask, r.clicks);
  return std::move(r.scores);
}

}  // namespace

SplitScores evaluate_split(model::MSAM& model, const std::vector<std::string>& entries,
                           const SplitEvalOptions& o, const SplitEvalHooks& hooks) {
  if (entries.empty()) throw Error("evaluation: the chosen split has no cases");
  if (o.save_masks && !hooks.write_mask)
    throw Error("saving masks needs a build with ITK (image IO)");
  if (o.sessions && (!hooks.read_scan || !hooks.original_label))
    throw Error("evaluating sessions needs the scans and labels: a build with ITK (image IO)");
  const auto original = o.original_grid ? hooks.original_label : OriginalLabelReader{};
  if (o.original_grid && !original && !o.sessions)
    spdlog::warn(
        "evaluation: no reader for the original labels (a build without ITK): scoring in the "
        "crop only");

  SplitScores out;
  out.columns.clicks = o.eval.clicks;
  out.columns.crop = !o.sessions;
  out.columns.original = o.sessions || static_cast<bool>(original);
  out.columns.seconds = true;
  const size_t rank = o.group ? static_cast<size_t>(o.group->rank()) : 0;
  const size_t world = o.group ? static_cast<size_t>(o.group->size()) : 1;
  // Every case's clicks come from its own seed, so which rank scores it does not matter.
  std::vector<std::pair<size_t, CaseScores>> mine;
  for (size_t i = rank; i < entries.size(); i += world) {
    auto s = o.sessions ? evaluate_session_entry(model, data::read_cache_info(entries[i]), i, o, hooks)
                        : evaluate_crop_entry(model, entries[i], i, o, hooks, original);
    char line[256];
    std::snprintf(line, sizeof line, "[%zu/%zu] %s  Dice@1 %.4f  Dice@%lld %.4f  (%.1f s)", i + 1,
                  entries.size(), s.case_id.c_str(), s.dice_per_click.front(),
                  static_cast<long long>(s.dice_per_click.size()), s.dice_per_click.back(),
                  s.seconds);
    spdlog::info(line);
    mine.emplace_back(i, std::move(s));
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
  nlohmann::json settings{{"clicks", o.eval.clicks},
                          {"protocol", interaction::name(o.eval.protocol)},
                          {"multi_click", o.eval.multi_click},
                          {"threshold_on_logits", o.eval.threshold},
                          {"nsd_tolerance_mm", o.eval.nsd_tolerance_mm},
                          {"seed", o.eval.seed},
                          {"mirror", o.eval.mirror},
                          {"sessions", o.sessions},
                          {"checkpoint", o.model_name}};
  if (o.sessions) {
    settings["max_windows"] = o.session.max_windows;
    settings["spacing"] = o.session.spacing ? nlohmann::json(*o.session.spacing) : nlohmann::json();
  }
  write_split_report(o.out_dir, out, settings);
  return out;
}

}  // namespace msam::eval
