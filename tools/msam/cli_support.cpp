#include "cli_support.h"

#include <torch/torch.h>

#include <map>
#include <memory>
#include <set>

#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/data/preprocess.h"
#include "msam/dist/launch.h"
#ifdef MSAM_HAVE_ITK
#include "msam/imageio/image_io.h"
#endif
#include "msam/train/checkpoint.h"
#include "msam/train/run_data.h"

namespace msam::cli {

#ifdef MSAM_HAVE_ITK
data::CaseReader case_reader() {
  return [](const data::CaseSource& c) {
    return std::make_pair(imageio::read_image(c.image, c.channel), imageio::read_label(c.label));
  };
}

namespace {

// The case's binarised ground truth on its original grid.
eval::OriginalLabelReader original_label_reader() {
  return [](const data::CacheEntryInfo& info) {
    auto label = imageio::read_label(info.label.path);
    label.data = data::binarise_label(label, info.targets);
    return label;
  };
}

}  // namespace

eval::SplitEvalHooks split_eval_hooks() {
  return {original_label_reader(), imageio::write_volume, {}};
}

eval::ScanReader scan_reader(const train::Config& run) {
  // Their files and channels from the configured datasets.
  auto sources = std::make_shared<std::map<std::string, data::CaseSource>>();
  for (auto& c : data::discover_cases(train::dataset_specs(run))) (*sources)[c.id] = c;
  return [sources](const data::CacheEntryInfo& info) {
    const auto it = sources->find(info.case_id);
    if (it == sources->end())
      throw Error(info.case_id + ": not among the configured datasets' cases (" +
                  info.image.path + ")");
    return imageio::read_image(it->second.image, it->second.channel);
  };
}

eval::PredictionHooks prediction_hooks() {
  return {imageio::read_label, original_label_reader()};
}
#else
data::CaseReader case_reader() { return {}; }
eval::SplitEvalHooks split_eval_hooks() { return {}; }
eval::ScanReader scan_reader(const train::Config&) { return {}; }
eval::PredictionHooks prediction_hooks() { return {}; }
#endif

at::ScalarType autocast_dtype(const std::string& precision, const torch::Device& device) {
  const auto p = train::parse_precision(precision, "--precision");
  if (p != train::Precision::kFp32 && !device.is_cuda())
    throw Error("--precision " + precision + " needs --device cuda (the CPU runs fp32)");
  return train::amp_dtype(p);
}

namespace {

interaction::ScanModality session_modality(const std::string& modality) {
  if (modality == "ct") return interaction::ScanModality::kCT;
  if (modality == "mr") return interaction::ScanModality::kMR;
  if (modality == "auto") return interaction::ScanModality::kAuto;
  throw Error("--modality: '" + modality + "' is not one of auto, ct, mr");
}

std::string spacing_text(const data::Point3& s) {
  return std::to_string(s[0]) + " " + std::to_string(s[1]) + " " + std::to_string(s[2]);
}

}  // namespace

void add_session_options(CLI::App& app, SessionFlags& flags) {
  app.add_option("--spacing", flags.spacing,
                 "resample scans to this spacing (mm) first (default: the checkpoint's training "
                 "spacing, else each scan's own)")
      ->expected(3);
  app.add_option("--modality", flags.modality,
                 "auto, ct (clamp to [-1000, 1000]) or mr (default: as the checkpoint was "
                 "trained, else auto)")
      ->check(CLI::IsMember({"auto", "ct", "mr"}));
  flags.threshold_option = app.add_option(
      "--threshold", flags.threshold,
      "mask = logits > threshold (default: the checkpoint's loop.threshold, else 0.5, the "
      "reference's)");
  auto* multi = app.add_flag("--multi-click", flags.multi_click,
                             "feed all clicks so far each iteration (default: as the checkpoint "
                             "was trained, else the newest click only)");
  app.add_flag("--newest-click", flags.newest_click, "feed only the newest click each iteration")
      ->excludes(multi);
  add_max_windows_option(app, flags.max_windows);
}

CLI::Option* add_max_windows_option(CLI::App& app, int& max_windows) {
  return app.add_option("--max-windows", max_windows, "ROI windows to follow a large lesion")
      ->check(CLI::Range(1, 64));
}

void set_session_options(const std::string& checkpoint, const SessionFlags& flags,
                         interaction::SessionOptions& options) {
  const auto& spacing = flags.spacing;
  const auto& modality = flags.modality;
  if (!spacing.empty() && spacing.size() != 3) throw Error("--spacing needs three values (mm)");
  const auto run = train::recorded_run_config(checkpoint);
  std::optional<data::Point3> trained_spacing;
  std::optional<interaction::ScanModality> trained_modality;
  if (run) {
    if (run->data.spacing) trained_spacing = *run->data.spacing;
    for (const auto& d : run->data.datasets) {
      const auto m = d.modality == train::Modality::kCT ? interaction::ScanModality::kCT
                                                         : interaction::ScanModality::kMR;
      trained_modality = !trained_modality || *trained_modality == m
                             ? m
                             : interaction::ScanModality::kAuto;  // mixed: decide per scan
    }
  }
  if (!spacing.empty()) {
    options.spacing = data::Point3{spacing[0], spacing[1], spacing[2]};
    if (run && trained_spacing != options.spacing)
      spdlog::warn("--spacing " + spacing_text(*options.spacing) + " differs from the " +
                   (trained_spacing ? spacing_text(*trained_spacing) + " mm" : "native spacing") +
                   " " + checkpoint + " was trained at");
  } else {
    options.spacing = trained_spacing;
    if (trained_spacing)
      spdlog::info("preprocessing: resampled to " + spacing_text(*trained_spacing) +
                   " mm, as " + checkpoint + " was trained");
  }
  if (!modality.empty()) {
    options.modality = session_modality(modality);
    if (trained_modality && *trained_modality != options.modality)
      spdlog::warn("--modality " + modality + " differs from the modality " + checkpoint +
                   " was trained on");
  } else {
    options.modality = trained_modality.value_or(interaction::ScanModality::kAuto);
  }
  // The model learned to read its clicks and its mask prompt as its training loop gave them.
  options.threshold = flags.threshold_option && flags.threshold_option->count() > 0
                          ? flags.threshold
                          : run ? run->loop.threshold : interaction::kReferenceClickThreshold;
  options.multi_click = flags.multi_click || (!flags.newest_click && run && run->loop.multi_click);
  options.max_windows = flags.max_windows;
  if (run)
    spdlog::info("clicks: {}, mask = logits > {}", options.multi_click ? "all so far" : "the newest",
                 options.threshold);
}

void check_run_against_checkpoint(const std::string& checkpoint, const model::MSAMConfig& model,
                                  const train::Config& run) {
  if (run.data.roi != model.encoder.img_size)
    throw Error(checkpoint + ": the model takes " + std::to_string(model.encoder.img_size) +
                "³ crops, but the run's data.roi is " + std::to_string(run.data.roi) +
                " (evaluate with --set data.roi=" + std::to_string(model.encoder.img_size) +
                " and the spacing the model was trained at)");
  const auto trained = train::recorded_run_config(checkpoint);
  if (!trained) return;
  auto spacing = [](const std::optional<std::array<double, 3>>& s) {
    return s ? spacing_text({(*s)[0], (*s)[1], (*s)[2]}) + " mm" : std::string("native");
  };
  if (trained->data.spacing != run.data.spacing)
    spdlog::warn(checkpoint + " was trained at data.spacing " + spacing(trained->data.spacing) +
                 "; this run's crops are at " + spacing(run.data.spacing));
  auto modalities = [](const train::Config& c) {
    std::set<train::Modality> m;
    for (const auto& d : c.data.datasets) m.insert(d.modality);
    return m;
  };
  if (modalities(*trained) != modalities(run))
    spdlog::warn(checkpoint + " was trained on other modalities (data.datasets[].modality: CT "
                              "intensities are clamped, MR ones are not) than this run's data");
  auto targets = [](const train::Config& c) {
    std::set<std::vector<int64_t>> t;
    for (const auto& d : c.data.datasets) t.insert(d.target_labels);
    return t;
  };
  if (targets(*trained) != targets(run))
    spdlog::warn(checkpoint + " was trained on other target_labels than this run's datasets "
                              "name: the lesions it learnt may not be the ones scored");
}

void add_click_options(CLI::App& app, eval::EvalOptions& options, std::string& protocol) {
  app.add_option("--clicks", options.clicks, "refinement clicks per case")
      ->check(CLI::Range(1, 100));
  app.add_option("--protocol", protocol, "click protocol: random, fnfp5050, center");
  app.add_flag("--multi-click", options.multi_click, "feed all clicks so far");
  app.add_option("--threshold", options.threshold,
                 "mask = logits > threshold, clicks on its errors (0.5: the reference's choice)");
  app.add_option("--seed", options.seed, "click sampling seed");
  app.add_flag("--mirror", options.mirror,
               "test-time mirroring: each mask the mean over the crop's 8 mirror images (8x the "
               "compute)");
}

eval::RunSettings run_settings(const train::Config& run) {
  return {train::device_of(run, dist::launch_info(dist::process_environment()).local_rank),
          train::amp_dtype(run.precision)};
}

std::shared_ptr<dist::ProcessGroup> join_process_group(const train::Config& run) {
  const auto launch = dist::launch_info(dist::process_environment());
  if (!launch.distributed()) return nullptr;
  // Rank 0 speaks for the job; the others report only what goes wrong.
  if (launch.rank != 0 && spdlog::get_level() < spdlog::level::warn)
    spdlog::set_level(spdlog::level::warn);
  dist::GroupOptions go;
  go.timeout = std::chrono::milliseconds(static_cast<int64_t>(run.dist.timeout * 1000));
  go.cuda = run.device == train::DeviceKind::kCuda;
  return dist::ProcessGroup::connect(launch, go);
}

model::MSAM load_inference_model(const std::string& checkpoint, const torch::Device& device,
                                 std::string* summary) {
  auto model = model::load_for_inference(checkpoint, summary);
  model->to(device);
  model->set_cuda_graphs(device.is_cuda());
  return model;
}

}  // namespace msam::cli
