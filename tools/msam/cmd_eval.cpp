// msam eval --config F (--checkpoint C [--sessions] | --predictions DIR) [--split test] [click options]
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "cli_support.h"
#include "command.h"
#include "msam/common/log.h"
#include "msam/common/error.h"
#include "msam/train/run_data.h"

namespace msam::cli {
namespace {

struct Options {
  std::string config, checkpoint, predictions, split = "test", protocol = "random", out;
  std::vector<std::string> overrides;
  eval::EvalOptions clicks;
  bool original_grid = true, save_masks = false, sessions = false;
  int overlays = 3;
  int max_windows = interaction::SessionOptions{}.max_windows;
};

// The cache entries of `split`; "all" is every prepared case of the configured data, with no
// split file read or written (scoring a model on data it was not trained on).
std::vector<std::string> split_entries(const train::Config& config, const std::string& split,
                                       dist::ProcessGroup* group) {
  if (split == "all") {
    auto entries = train::prepare_cases(config, case_reader(), group).entries;
    if (entries.empty()) throw Error("--split all: no case of the configured data could be prepared");
    return entries;
  }
  auto data = train::prepare_run_data(config, case_reader(), group);
  return split == "test" ? data.test : split == "val" ? data.val : data.train;
}

eval::SplitEvalOptions model_eval_options(const Options& o, const train::Config& config,
                                          const std::string& out_dir,
                                          std::shared_ptr<dist::ProcessGroup> group) {
  auto options = eval::split_eval_options(run_settings(config), o.clicks, o.protocol);
  options.group = std::move(group);
  options.out_dir = out_dir;
  options.original_grid = o.original_grid;
  options.save_masks = o.save_masks;
  options.overlays = o.overlays;
  options.model_name = o.checkpoint;
  options.sessions = o.sessions;
  options.session.spacing = config.data.spacing;
  options.session.max_windows = o.max_windows;
  return options;
}

eval::SplitScores score_masks(const Options& o, const std::vector<std::string>& entries,
                              const std::string& out_dir) {
  auto hooks = prediction_hooks();
  if (!o.original_grid) hooks.original_label = {};
  return eval::score_predictions(
      entries, {o.predictions, out_dir, o.clicks.nsd_tolerance_mm, o.overlays}, hooks);
}

int run(const Options& o) {
  if (o.checkpoint.empty() == o.predictions.empty())
    throw Error("give either --checkpoint (evaluate a model) or --predictions (score masks)");
  auto config = train::load_config(o.config, o.overrides);
  const auto out_dir = o.out.empty()
                           ? (std::filesystem::path(config.output) / ("eval_" + o.split)).string()
                           : o.out;
  std::filesystem::create_directories(out_dir);
  // Under a launcher the ranks share the cases; rank 0 writes the files and prints.
  const auto group = join_process_group(config);
  const bool main = !group || group->is_main();
  std::unique_ptr<log::FileLog> file_log;
  if (main)
    file_log = std::make_unique<log::FileLog>(
        (std::filesystem::path(out_dir) / "eval.log").string(), false);
  // The model first: a run whose crops it cannot take fails before any data is prepared.
  model::MSAM model{nullptr};
  eval::SplitEvalOptions options;
  if (!o.checkpoint.empty()) {
    options = model_eval_options(o, config, out_dir, group);
    std::string summary;
    model = load_inference_model(o.checkpoint, options.device, &summary);
    spdlog::info(summary);
    check_run_against_checkpoint(o.checkpoint, model->config(), config);
  }
  const auto entries = split_entries(config, o.split, group.get());
  eval::SplitScores scores;
  if (o.predictions.empty()) {
    auto hooks = split_eval_hooks();
    if (o.sessions) hooks.read_scan = scan_reader(config);
    scores = eval::evaluate_split(model, entries, options, hooks);
  } else if (main) {  // scoring masks is quick: rank 0 does it while the others wait
    scores = score_masks(o, entries, out_dir);
  }
  if (group && !o.predictions.empty()) group->barrier("waiting for rank 0 to score the masks");
  if (!main) return 0;
  std::printf("%s", eval::summary_text(scores).c_str());
  std::printf("results in %s (per_case.csv, summary.csv%s%s%s)\n", out_dir.c_str(),
              scores.columns.clicks > 0 ? ", dice_vs_clicks.svg" : "",
              o.overlays > 0 ? ", overlays/" : "", o.sessions ? ", clicks/" : "");
  return 0;
}

const Register reg(
    "eval", "Evaluate a checkpoint, or score other tools' masks, on a split",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      app.add_option("--config", o->config, "run configuration (YAML) naming the data")
          ->required()
          ->check(CLI::ExistingFile);
      auto* checkpoint =
          app.add_option("--checkpoint", o->checkpoint, "model weights (.safetensors or .pth)")
              ->check(CLI::ExistingFile);
      auto* predictions = app.add_option(
          "--predictions", o->predictions,
          "score these masks instead of a model: <case>.nii.gz (or .nii, .nrrd, .mha, a DICOM "
          "folder) per case, in the scan's geometry");
      checkpoint->excludes(predictions);
      app.add_option("--split", o->split,
                     "train, val, test, or all (every case of the configured data, no split)")
          ->check(CLI::IsMember({"train", "val", "test", "all"}));
      add_click_options(app, o->clicks, o->protocol);
      for (const char* name :
           {"--clicks", "--protocol", "--multi-click", "--threshold", "--seed", "--mirror"})
        app.get_option(name)->excludes(predictions);
      app.add_option("--nsd-tolerance", o->clicks.nsd_tolerance_mm, "NSD tolerance in mm");
      app.add_option("--out", o->out, "output folder (default <output>/eval_<split>)");
      app.add_flag("--save-masks", o->save_masks,
                   "write each mask as NIfTI in its scan's original geometry")
          ->excludes(predictions);
      app.add_option("--overlays", o->overlays, "overlay PNGs for the first N cases");
      auto* no_original = app.add_flag("!--no-original", o->original_grid,
                                       "skip metrics on the original scan grid");
      auto* sessions = app.add_flag(
          "--sessions", o->sessions,
          "what a person gets: each scan through a session as msam segment runs it (the window "
          "on the first click, the lesion followed, the mask on the scan's grid), scored there; "
          "each case's clicks in clicks/<case>.csv");
      sessions->excludes(predictions)->excludes(no_original)->excludes("--mirror");
      add_max_windows_option(app, o->max_windows)->needs(sessions);
      app.add_option("--set", o->overrides, "override a config key: a.b=value");
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace msam::cli
