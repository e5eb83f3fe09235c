#include "msam/train/run_data.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "msam/common/error.h"
#include "msam/common/log.h"

namespace fs = std::filesystem;

namespace msam::train {

void check_global_batch(const Config& config, int ranks) {
  if (ranks > 1 && config.batch_size % ranks != 0)
    throw Error("batch_size " + std::to_string(config.batch_size) +
                " (the global batch) does not divide among " + std::to_string(ranks) +
                " ranks; use a multiple of " + std::to_string(ranks));
}

torch::Device device_of(const Config& config, int local_rank) {
  if (config.device == DeviceKind::kCuda) {
    if (!torch::cuda::is_available())
      throw Error("device: cuda was requested but no CUDA device is available");
    if (local_rank >= static_cast<int>(torch::cuda::device_count()))
      throw Error("device: local rank " + std::to_string(local_rank) + " needs cuda:" +
                  std::to_string(local_rank) + " but this machine has " +
                  std::to_string(torch::cuda::device_count()) + " GPU(s)");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  return torch::Device(torch::kCPU);
}

data::PreprocessSettings preprocess_settings(const Config& config) {
  data::PreprocessSettings settings;
  if (config.data.spacing) settings.target_spacing = *config.data.spacing;
  settings.patch_size = {config.data.roi, config.data.roi, config.data.roi};
  settings.min_label_voxels = config.data.min_label_voxels;
  settings.on_geometry_mismatch = config.data.copy_image_geometry
                                      ? data::GeometryMismatch::CopyImageGeometry
                                      : data::GeometryMismatch::Error;
  return settings;
}

std::vector<data::DatasetSpec> dataset_specs(const Config& config) {
  std::vector<data::DatasetSpec> specs;
  for (const auto& d : config.data.datasets) {
    data::DatasetSpec s;
    s.name = d.name;
    s.root = d.root.empty() && !d.dataset_json.empty()
                 ? fs::path(d.dataset_json).parent_path().string()
                 : d.root;
    s.pairs = d.pairs;
    s.image_pattern = d.image_pattern;
    s.label_pattern = d.label_pattern;
    s.channel = d.channel;
    for (auto t : d.target_labels) s.targets.push_back(static_cast<int>(t));
    s.modality = d.modality == Modality::kCT ? data::Modality::CT : data::Modality::MR;
    specs.push_back(std::move(s));
  }
  return specs;
}

PreparedCases prepare_cases(const Config& config, const data::CaseReader& reader,
                            dist::ProcessGroup* group) {
  const auto cases = data::discover_cases(dataset_specs(config));
  PreparedCases out;
  out.cache_dir = config.data.cache_dir.empty() ? (fs::path(config.output) / "cache").string()
                                                : config.data.cache_dir;
  const auto settings = preprocess_settings(config);
  const bool main = !group || group->is_main();
  if (reader) {
    std::vector<data::CaseSource> mine;
    for (size_t i = 0; i < cases.size(); ++i)
      if (!group || static_cast<int>(i % static_cast<size_t>(group->size())) == group->rank())
        mine.push_back(cases[i]);
    auto report = data::prepare_cache(
        mine, settings, out.cache_dir, reader,
        [&](const data::CaseOutcome& c) {
          if (c.status == data::CaseOutcome::Status::Skipped ||
              c.status == data::CaseOutcome::Status::Failed)
            spdlog::warn(data::status_name(c.status) + " " + c.case_id + ": " + c.message);
        },
        /*write_report=*/!group);
    if (group) {
      // One report of every case, in the datasets' order, written by rank 0.
      std::map<std::string, data::CaseOutcome> by_id;
      for (const auto& text : group->all_gather(data::to_json_text(report),
                                                "gathering the data preparation reports")) {
        const auto part = data::prepare_report_from_json(text);
        for (const auto& c : part.cases) by_id[c.case_id] = c;
      }
      report.cases.clear();
      for (const auto& c : cases) report.cases.push_back(by_id.at(c.id));
      if (main) data::write_prepare_report(out.cache_dir, report);
    }
    spdlog::info("data: " + report.summary() + " (cache " + out.cache_dir + ")");
  }
  std::vector<std::string> ids;
  for (const auto& c : cases) ids.push_back(c.id);
  std::vector<std::string> missing;
  out.entries = data::cached_entries(out.cache_dir, ids, &missing);
  for (const auto& id : ids)
    if (std::find(missing.begin(), missing.end(), id) == missing.end()) out.ids.push_back(id);
  if (!missing.empty() && !reader && main)
    spdlog::warn("data: " + std::to_string(missing.size()) +
                 " case(s) have no cache entry and are left out (run `msam prepare` to see why)");
  return out;
}

RunData prepare_run_data(const Config& config, const data::CaseReader& reader,
                         dist::ProcessGroup* group) {
  const auto prepared = prepare_cases(config, reader, group);
  const auto& usable = prepared.ids;
  const bool main = !group || group->is_main();
  RunData out;
  out.cache_dir = prepared.cache_dir;
  if (usable.size() < 3)
    throw Error("data: only " + std::to_string(usable.size()) +
                " usable case(s) after preprocessing; a train/val/test split needs at least 3");
  out.split_file = config.data.split.file.empty()
                       ? (fs::path(config.output) / "split.json").string()
                       : config.data.split.file;
  fs::create_directories(fs::path(out.split_file).parent_path());
  // Rank 0 writes a new split; the others read it.
  auto split = [&] {
    out.split = data::load_or_create_split(out.split_file, usable,
                                           static_cast<uint64_t>(config.data.split.seed),
                                           config.data.split.ratios);
  };
  if (main) split();
  if (group) group->barrier("waiting for rank 0's split");
  if (!main) split();
  auto paths = [&](const std::vector<std::string>& v) {
    std::vector<std::string> p;
    for (const auto& id : v) p.push_back(data::cache_entry_path(out.cache_dir, id));
    return p;
  };
  out.train = paths(out.split.train);
  out.val = paths(out.split.val);
  out.test = paths(out.split.test);
  spdlog::info("data: split " + std::to_string(out.train.size()) + " train / " +
               std::to_string(out.val.size()) + " val / " + std::to_string(out.test.size()) +
               " test (" + out.split_file + ")");
  return out;
}

}  // namespace msam::train
