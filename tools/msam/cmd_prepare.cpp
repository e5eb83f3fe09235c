// msam prepare --config x.yaml: preprocess every case of the config's datasets into the cache
// and write (or check) the split file. Needs ITK to read scans; training then needs only the cache.
#if defined(MSAM_HAVE_ITK) && defined(MSAM_HAVE_YAML)
#include <iostream>

#include "command.h"
#include "msam/common/error.h"
#include "msam/data/cache.h"
#include "msam/data/data_config.h"
#include "msam/data/split.h"
#include "msam/imageio/image_io.h"

namespace {

int run_prepare(const std::string& config_path) {
  using namespace msam::data;
  const auto config = load_data_config(config_path);
  const auto cases = discover_cases(config.datasets);
  std::cout << "prepare: " << cases.size() << " cases from " << config.datasets.size() << " dataset(s) into "
            << config.cache_dir << "\n";
  const CaseReader reader = [](const CaseSource& c) {
    return std::make_pair(msam::imageio::read_image(c.image), msam::imageio::read_label(c.label));
  };
  const auto report = prepare_cache(cases, config.preprocess, config.cache_dir, reader, [](const CaseOutcome& o) {
    const bool problem = o.status == CaseOutcome::Status::Skipped || o.status == CaseOutcome::Status::Failed;
    (problem ? std::cerr : std::cout) << "  " << status_name(o.status) << " " << o.case_id
                                      << (o.message.empty() ? "" : ": " + o.message) << "\n";
  });
  // The split covers every discovered case, usable or not, so that it depends on the
  // dataset alone and not on preprocessing settings such as min_label_voxels.
  std::vector<std::string> ids;
  for (const auto& c : cases) ids.push_back(c.id);
  const auto split = load_or_create_split(config.split_file, ids, config.split_seed, config.split_ratios);
  std::cout << "prepare: " << report.summary() << " (details in " << config.cache_dir
            << "/prepare_report.json)\n"
            << "split: " << split.train.size() << " train, " << split.val.size() << " val, " << split.test.size()
            << " test (" << config.split_file << ")\n";
  const auto usable = report.count(CaseOutcome::Status::Prepared) + report.count(CaseOutcome::Status::Reused);
  if (usable == 0) throw msam::Error(config_path + ": no case could be prepared");
  return 0;
}

const msam::cli::Register reg("prepare", "Preprocess datasets into the training cache and write the split",
                              [](CLI::App& app) {
                                auto config = std::make_shared<std::string>();
                                app.add_option("--config", *config, "YAML config with a data: section")
                                    ->required();
                                return [config] { return run_prepare(*config); };
                              });

}  // namespace
#endif
