// msam transfer: the paper's dataset-transfer experiment. "before" = trained and tested on
// the target dataset; "after" = trained on the source dataset, tested on the target's test
// split. Checkpoints are reused when given and trained otherwise.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cli_support.h"
#include "command.h"
#include "msam/common/log.h"
#include "msam/dist/launch.h"
#include "msam/eval/metric_table.h"
#include "msam/io/csv.h"
#include "msam/train/trainer.h"

namespace fs = std::filesystem;

namespace msam::cli {
namespace {

struct Options {
  std::string source_config, target_config, source_checkpoint, target_checkpoint, out,
      protocol = "random";
  std::vector<std::string> overrides;
  eval::EvalOptions clicks;
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
  spdlog::info("transfer: training on " + config_path + " into " + config.output);
  train::Trainer trainer(config, config_path, to);
  trainer.run();
  return trainer.best_checkpoint();
}

int run(Options o) {
  // Two trainings and an evaluation in one command: not split across ranks.
  if (dist::launch_info(dist::process_environment()).distributed())
    throw Error("msam transfer runs as one process; under torchrun or srun train each side "
                "with `msam train`, then give --source-checkpoint and --target-checkpoint");
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
  auto data = train::prepare_run_data(target, case_reader());
  // The crop scope only, as the paper reports transfer (and no label is read again).
  auto options = eval::split_eval_options(run_settings(target), o.clicks, o.protocol);
  options.original_grid = false;
  options.overlays = 0;
  auto hooks = split_eval_hooks();
  auto evaluate = [&](const std::string& checkpoint, const std::string& tag) {
    options.out_dir = (fs::path(o.out) / tag).string();
    options.model_name = checkpoint;
    std::string summary;
    auto model = load_inference_model(checkpoint, options.device, &summary);
    spdlog::info(summary);
    std::vector<eval::CaseMetrics> crop;
    for (const auto& c : eval::evaluate_split(model, data.test, options, hooks).cases)
      crop.push_back(c.crop);
    return eval::summarize(crop);
  };
  const auto sb = evaluate(target_ckpt, "eval_before");
  const auto sa = evaluate(source_ckpt, "eval_after");

  io::CsvWriter csv((fs::path(o.out) / "transfer.csv").string(),
                      {"metric", "before_mean", "before_std", "after_mean", "after_std", "drop"});
  std::printf("\ntransfer %s -> %s, %zu target test cases, %lld clicks (crop metrics)\n",
              o.source_config.c_str(), o.target_config.c_str(), data.test.size(),
              (long long)o.clicks.clicks);
  std::printf("%-6s %18s %18s %10s\n", "metric", "before (target)", "after (source)", "drop");
  const auto& table = eval::metric_table();
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& b = sb[i].second;
    const auto& a = sa[i].second;
    const double drop = eval::quality_drop(table[i], b.mean, a.mean);
    std::printf("%-6s %9.4f ± %-6.4f %9.4f ± %-6.4f %+10.4f\n", table[i].name, b.mean, b.std,
                a.mean, a.std, drop);
    csv.add_row({table[i].name, io::format_number(b.mean), io::format_number(b.std),
                 io::format_number(a.mean), io::format_number(a.std),
                 io::format_number(drop)});
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
      add_click_options(app, o->clicks, o->protocol);
      app.add_option("--set", o->overrides, "override a key in both configurations");
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace msam::cli
