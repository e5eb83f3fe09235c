// msam transfer: the paper's dataset-transfer experiment. "before" = trained and tested on
// the target dataset; "after" = trained on the source dataset, tested on the target's test
// split. Checkpoints are reused when given and trained otherwise.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cli_support.h"
#include "command.h"
#include "msam/eval/report.h"
#include "msam/train/trainer.h"

namespace fs = std::filesystem;

namespace msam::cli {
namespace {

struct Options {
  std::string source_config, target_config, source_checkpoint, target_checkpoint, out,
      protocol = "random";
  std::vector<std::string> overrides;
  EvalRunOptions run;
};

// The checkpoint trained on `config_path`'s data: given, or trained now into out/<tag>.
std::string checkpoint_for(const std::string& config_path, const std::string& given,
                           const std::string& out, const std::string& tag,
                           const std::vector<std::string>& overrides) {
  if (!given.empty()) return given;
  auto overrides_here = overrides;
  overrides_here.push_back("output=" + (fs::path(out) / tag).string());
  auto config = train::load_config(config_path, overrides_here);
  train::TrainerOptions to;
  to.resume = true;  // an interrupted transfer run picks up where it stopped
  to.reader = case_reader();
  to.log = log_line;
  log_line("transfer: training on " + config_path + " into " + config.output);
  train::Trainer trainer(config, config_path, to);
  trainer.run();
  return trainer.best_checkpoint();
}

int run(Options o) {
  fs::create_directories(o.out);
  const auto target_ckpt =
      checkpoint_for(o.target_config, o.target_checkpoint, o.out, "target", o.overrides);
  const auto source_ckpt =
      checkpoint_for(o.source_config, o.source_checkpoint, o.out, "source", o.overrides);

  // The target's test split, as the target run defines it.
  auto overrides = o.overrides;
  if (o.target_checkpoint.empty())
    overrides.push_back("output=" + (fs::path(o.out) / "target").string());
  auto target = train::load_config(o.target_config, overrides);
  auto data = train::prepare_run_data(target, case_reader(), log_line);
  finish_eval_options(target, o.protocol, o.run);

  o.run.out_dir = (fs::path(o.out) / "eval_before").string();
  auto before = evaluate_entries(target_ckpt, data.test, o.run);
  o.run.out_dir = (fs::path(o.out) / "eval_after").string();
  auto after = evaluate_entries(source_ckpt, data.test, o.run);

  std::vector<eval::CaseMetrics> mb, ma;
  for (const auto& r : before) mb.push_back(r.crop);
  for (const auto& r : after) ma.push_back(r.crop);
  auto sb = eval::summarize(mb), sa = eval::summarize(ma);
  eval::CsvWriter csv((fs::path(o.out) / "transfer.csv").string(),
                      {"metric", "before_mean", "before_std", "after_mean", "after_std", "drop"});
  std::printf("\ntransfer %s -> %s, %zu target test cases, %lld clicks (crop metrics)\n",
              o.source_config.c_str(), o.target_config.c_str(), before.size(),
              (long long)o.run.eval.clicks);
  std::printf("%-6s %18s %18s %10s\n", "metric", "before (target)", "after (source)", "drop");
  for (size_t i = 0; i < sb.size(); ++i) {
    const auto& [name, b] = sb[i];
    const auto& a = sa[i].second;
    // Drop is the loss of quality: before − after for overlap scores, after − before for
    // distances.
    const bool higher_better = name == "dice" || name == "iou" || name == "nsd";
    const double drop = higher_better ? b.mean - a.mean : a.mean - b.mean;
    std::printf("%-6s %9.4f ± %-6.4f %9.4f ± %-6.4f %+10.4f\n", name.c_str(), b.mean, b.std,
                a.mean, a.std, drop);
    csv.add_row({name, eval::format_number(b.mean), eval::format_number(b.std),
                 eval::format_number(a.mean), eval::format_number(a.std),
                 eval::format_number(drop)});
  }
  csv.close();
  std::printf("table in %s; per-case results in eval_before/ and eval_after/\n",
              (fs::path(o.out) / "transfer.csv").c_str());
  return 0;
}

const Register reg(
    "transfer", "Dataset transfer: train on a source dataset, test on a target dataset",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      app.add_option("--source", o->source_config, "run configuration of the source dataset")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--target", o->target_config, "run configuration of the target dataset")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--source-checkpoint", o->source_checkpoint,
                     "model trained on the source (trained now if absent)");
      app.add_option("--target-checkpoint", o->target_checkpoint,
                     "model trained on the target (trained now if absent)");
      app.add_option("--out", o->out, "output folder")->required();
      add_click_options(app, o->run.eval, o->protocol);
      app.add_option("--set", o->overrides, "override a key in both configurations");
      return [o] {
        o->run.original_grid = false;
        o->run.overlays = 0;
        return run(*o);
      };
    });

}  // namespace
}  // namespace msam::cli
