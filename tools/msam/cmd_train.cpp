// msam train --config F [--resume] [--set key=value ...]
#include <torch/torch.h>

#include <cstdio>

#include "cli_support.h"
#include "command.h"
#include "msam/train/trainer.h"

namespace msam::cli {
namespace {

struct Options {
  std::string config;
  bool resume = false;
  std::vector<std::string> overrides;
};

int run(const Options& o) {
  auto config = train::load_config(o.config, o.overrides);
  train::TrainerOptions to;
  to.resume = o.resume;
  to.reader = case_reader();
  train::Trainer trainer(config, o.config, to);
  auto history = trainer.run();
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
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
