// msam train --config F [--resume] [--set key=value ...] [--nproc N]
#include <torch/torch.h>

#include <cstdio>

#include "cli_support.h"
#include "command.h"
#include "msam/common/error.h"
#include "msam/dist/launch.h"
#include "msam/dist/local_launch.h"
#include "msam/train/trainer.h"

namespace msam::cli {
namespace {

struct Options {
  std::string config;
  bool resume = false;
  std::vector<std::string> overrides;
  int nproc = 1;
};

// This command line without --nproc: what each local rank runs.
std::vector<std::string> rank_command_line() {
  auto args = dist::own_command_line();
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

int run(const Options& o) {
  auto config = train::load_config(o.config, o.overrides);
  if (o.nproc > 1) {
    if (dist::launch_info(dist::process_environment()).distributed())
      throw Error("--nproc " + std::to_string(o.nproc) +
                  ": this process was already started as a rank by a launcher (RANK/WORLD_SIZE "
                  "or SLURM_PROCID are set); use one or the other");
    train::check_global_batch(config, o.nproc);  // before any rank starts
    return dist::run_local_ranks(o.nproc, rank_command_line());
  }
  train::TrainerOptions to;
  to.resume = o.resume;
  to.reader = case_reader();
  to.group = join_process_group(config);
  train::Trainer trainer(config, o.config, to);
  auto history = trainer.run();
  if (!to.group || to.group->is_main())
    std::printf("trained %zu epoch(s); best checkpoint %s\n", history.size(),
                trainer.best_checkpoint().c_str());
  return 0;
}

const Register reg("train", "Train M-SAM from a YAML run configuration",
                   [](CLI::App& app) -> std::function<int()> {
                     auto o = std::make_shared<Options>();
                     app.add_option("--config", o->config, "run configuration (YAML)")
                         ->required()
                         ->check(CLI::ExistingFile);
                     app.add_flag("--resume", o->resume,
                                  "continue from <output>/latest.safetensors if present");
                     app.add_option("--set", o->overrides, "override a config key: a.b=value");
                     app.add_option("--nproc", o->nproc,
                                    "start N data-parallel ranks on this machine (batch_size "
                                    "stays the global batch); under torchrun or srun leave it out")
                         ->check(CLI::PositiveNumber);
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
