// msam eval --config F --checkpoint C [--split test] [--clicks 10] [--protocol random|center]
#include <torch/torch.h>

#include <filesystem>

#include "cli_support.h"
#include "command.h"
#include "msam/common/error.h"
#include "msam/train/trainer.h"

namespace msam::cli {
namespace {

struct Options {
  std::string config, checkpoint, split = "test", protocol = "random", out;
  std::vector<std::string> overrides;
  EvalRunOptions run;
};

int run(Options o) {
  auto config = train::load_config(o.config, o.overrides);
  auto data = train::prepare_run_data(config, case_reader(), log_line);
  const std::vector<std::string>* entries = nullptr;
  if (o.split == "test") entries = &data.test;
  else if (o.split == "val") entries = &data.val;
  else if (o.split == "train") entries = &data.train;
  else throw Error("--split: unknown split '" + o.split + "' (train, val, test)");
  finish_eval_options(config, o.protocol, o.run);
  o.run.out_dir = o.out.empty()
                      ? (std::filesystem::path(config.output) / ("eval_" + o.split)).string()
                      : o.out;
  auto results = evaluate_entries(o.checkpoint, *entries, o.run);
  print_summary(results, o.run.eval.clicks);
  std::printf("results in %s (per_case.csv, summary.csv, dice_vs_clicks.svg%s)\n",
              o.run.out_dir.c_str(), o.run.overlays > 0 ? ", overlays/" : "");
  return 0;
}

const Register reg(
    "eval", "Evaluate a checkpoint on a split with simulated clicks",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      app.add_option("--config", o->config, "run configuration (YAML) naming the data")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--checkpoint", o->checkpoint, "model weights (.safetensors or .pth)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--split", o->split, "train, val or test");
      add_click_options(app, o->run.eval, o->protocol);
      app.add_option("--nsd-tolerance", o->run.eval.nsd_tolerance_mm, "NSD tolerance in mm");
      app.add_option("--out", o->out, "output folder (default <output>/eval_<split>)");
      app.add_flag("--save-masks", o->run.save_masks,
                   "write each mask as NIfTI in its scan's original geometry");
      app.add_option("--overlays", o->run.overlays, "overlay PNGs for the first N cases");
      app.add_flag("!--no-original", o->run.original_grid,
                   "skip metrics on the original scan grid");
      app.add_option("--set", o->overrides, "override a config key: a.b=value");
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace msam::cli
