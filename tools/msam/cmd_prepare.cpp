// msam prepare --config run.yaml: preprocess every case of the run's datasets into the cache
// and write (or check) the split file, so that training and evaluation need no ITK. Under a
// launcher (torchrun, srun) the ranks share the cases.
// Reads raw scans: needs ITK.
#ifdef MSAM_HAVE_ITK
#include <cstdio>

#include "cli_support.h"
#include "command.h"
#include "msam/train/run_data.h"

namespace msam::cli {
namespace {

struct Options {
  std::string config;
  std::vector<std::string> overrides;
};

int run(const Options& o) {
  auto config = train::load_config(o.config, o.overrides);
  const auto group = join_process_group(config);
  auto data = train::prepare_run_data(config, case_reader(), group.get());
  if (group && !group->is_main()) return 0;
  std::printf("cache %s: %zu train, %zu val, %zu test cases (split %s)\n",
              data.cache_dir.c_str(), data.train.size(), data.val.size(), data.test.size(),
              data.split_file.c_str());
  return 0;
}

const Register reg("prepare", "Preprocess a run's datasets into the cache and write the split",
                   [](CLI::App& app) -> std::function<int()> {
                     auto o = std::make_shared<Options>();
                     app.add_option("--config", o->config, "run configuration (YAML)")
                         ->required()
                         ->check(CLI::ExistingFile);
                     app.add_option("--set", o->overrides, "override a config key: a.b=value");
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
#endif  // MSAM_HAVE_ITK
