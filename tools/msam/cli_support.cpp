#include "cli_support.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "msam/common/error.h"
#include "msam/data/preprocess.h"
#ifdef MSAM_HAVE_ITK
#include "msam/imageio/image_io.h"
#endif
#include "msam/io/safetensors.h"
#include "msam/train/checkpoint.h"
#include "msam/model/msam.h"

namespace fs = std::filesystem;

namespace msam::cli {

#ifdef MSAM_HAVE_ITK
data::CaseReader case_reader() {
  return [](const data::CaseSource& c) {
    return std::make_pair(imageio::read_image(c.image), imageio::read_label(c.label));
  };
}

eval::OriginalLabelReader original_label_reader() {
  return [](const data::CacheEntryInfo& info) {
    auto label = imageio::read_label(info.label.path);
    label.data = data::binarise_label(label, info.targets);
    return label;
  };
}
#else
data::CaseReader case_reader() { return {}; }
eval::OriginalLabelReader original_label_reader() { return {}; }
#endif

void log_line(const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }

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

void set_preprocessing(const std::string& checkpoint, const std::vector<double>& spacing,
                       const std::string& modality, interaction::SessionOptions& options) {
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
      log_line("warning: --spacing " + spacing_text(*options.spacing) + " differs from the " +
               (trained_spacing ? spacing_text(*trained_spacing) + " mm" : "native spacing") +
               " " + checkpoint + " was trained at");
  } else {
    options.spacing = trained_spacing;
    if (trained_spacing)
      log_line("preprocessing: resampled to " + spacing_text(*trained_spacing) +
               " mm, as " + checkpoint + " was trained");
  }
  if (!modality.empty()) {
    options.modality = session_modality(modality);
    if (trained_modality && *trained_modality != options.modality)
      log_line("warning: --modality " + modality + " differs from the modality " + checkpoint +
               " was trained on");
  } else {
    options.modality = trained_modality.value_or(interaction::ScanModality::kAuto);
  }
}

void add_click_options(CLI::App& app, eval::EvalOptions& options, std::string& protocol) {
  app.add_option("--clicks", options.clicks, "refinement clicks per case")
      ->check(CLI::Range(1, 100));
  app.add_option("--protocol", protocol, "click protocol: random, fnfp5050, center");
  app.add_flag("--multi-click", options.multi_click, "feed all clicks so far");
  app.add_option("--threshold", options.threshold,
                 "mask = logits > threshold, clicks on its errors (0.5: the reference's choice)");
  app.add_option("--seed", options.seed, "click sampling seed");
}

void finish_eval_options(const train::Config& run, const std::string& protocol,
                         EvalRunOptions& options) {
  options.eval.protocol = interaction::parse_click_protocol(protocol, "--protocol");
  options.device = run.device == train::DeviceKind::kCuda ? "cuda" : "cpu";
  options.eval.amp_dtype = train::amp_dtype(run.precision);
}

model::MSAM load_inference_model(const std::string& checkpoint, const torch::Device& device,
                                 std::string* summary) {
  auto model = model::load_for_inference(checkpoint, summary);
  model->to(device);
  model->set_cuda_graphs(device.is_cuda());
  return model;
}

namespace {

std::string safe_name(std::string id) {
  for (auto& ch : id)
    if (ch == '/' || ch == '\\' || ch == ' ') ch = '_';
  return id;
}

data::Index3 lesion_center(const at::Tensor& label) {
  auto idx = label.nonzero();
  if (idx.size(0) == 0)
    return {label.size(0) / 2, label.size(1) / 2, label.size(2) / 2};
  auto c = idx.to(torch::kDouble).mean(0);
  return {static_cast<int64_t>(c[0].item<double>()), static_cast<int64_t>(c[1].item<double>()),
          static_cast<int64_t>(c[2].item<double>())};
}

// Final-click metrics of every case, in the crop and (where scored) on the original grid.
std::pair<std::vector<eval::CaseMetrics>, std::vector<eval::CaseMetrics>> split_scopes(
    const std::vector<eval::CaseResult>& results) {
  std::vector<eval::CaseMetrics> crop, orig;
  for (const auto& r : results) {
    crop.push_back(r.crop);
    if (r.original) orig.push_back(*r.original);
  }
  return {crop, orig};
}

}  // namespace

std::vector<eval::CaseResult> evaluate_entries(const std::string& checkpoint,
                                               const std::vector<std::string>& entries,
                                               const EvalRunOptions& o) {
  if (entries.empty()) throw Error("evaluation: the chosen split has no cases");
#ifndef MSAM_HAVE_ITK
  if (o.save_masks) throw Error("--save-masks needs a build with ITK (image IO)");
#endif
  std::string summary;
  auto model = model::load_for_inference(checkpoint, &summary);
  log_line(summary);
  torch::Device device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  model->to(device);
  model->set_cuda_graphs(device.is_cuda());
  fs::create_directories(o.out_dir);
  if (o.save_masks) fs::create_directories(fs::path(o.out_dir) / "masks");
  if (o.overlays > 0) fs::create_directories(fs::path(o.out_dir) / "overlays");
  const auto original = o.original_grid ? original_label_reader() : eval::OriginalLabelReader{};
  if (o.original_grid && !original)
    log_line("evaluation: built without ITK, scoring in the crop only (no original-grid metrics)");
  const bool original_grid = static_cast<bool>(original);

  std::vector<std::string> header{"case"};
  for (int64_t k = 1; k <= o.eval.clicks; ++k) header.push_back("dice_click" + std::to_string(k));
  const std::vector<std::string> names{"dice", "iou", "hd", "hd95", "assd", "nsd"};
  for (const auto& n : names) header.push_back(n);
  if (original_grid)
    for (const auto& n : names) header.push_back("orig_" + n);
  header.push_back("seconds");
  eval::CsvWriter csv((fs::path(o.out_dir) / "per_case.csv").string(), header);

  std::vector<eval::CaseResult> results;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto c = data::read_cache_entry(entries[i]);
    auto r = eval::evaluate_case(model, c, o.eval, device, original);
    std::vector<std::string> row{r.case_id};
    for (double d : r.dice_per_click) row.push_back(eval::format_number(d));
    for (const auto& [n, v] : eval::metric_values(r.crop)) row.push_back(eval::format_number(v));
    if (original_grid)
      for (const auto& [n, v] : eval::metric_values(*r.original))
        row.push_back(eval::format_number(v));
    row.push_back(eval::format_number(r.seconds));
    csv.add_row(row);
#ifdef MSAM_HAVE_ITK
    if (o.save_masks) {
      auto restored = data::restore_to_original(r.mask, c.info.record);
      imageio::write_volume(
          (fs::path(o.out_dir) / "masks" / (safe_name(r.case_id) + ".nii.gz")).string(), restored);
    }
#endif
    if (static_cast<int>(i) < o.overlays) {
      eval::render_overlay_png(
          (fs::path(o.out_dir) / "overlays" / (safe_name(r.case_id) + ".png")).string(),
          c.image.to(torch::kFloat), c.label, r.mask, r.clicks, lesion_center(c.label));
    }
    char line[200];
    std::snprintf(line, sizeof line, "[%zu/%zu] %s  Dice@1 %.4f  Dice@%lld %.4f  (%.1f s)", i + 1,
                  entries.size(), r.case_id.c_str(), r.dice_per_click.front(),
                  (long long)r.dice_per_click.size(), r.dice_per_click.back(), r.seconds);
    log_line(line);
    results.push_back(std::move(r));
  }
  csv.close();

  // Summaries: crop metrics, original-grid metrics, Dice per click.
  eval::CsvWriter sum((fs::path(o.out_dir) / "summary.csv").string(),
                      {"metric", "scope", "mean", "std", "median", "n_cases", "n_finite",
                       "n_nan", "n_inf"});
  nlohmann::json js = nlohmann::json::object();
  auto add = [&](const std::string& scope, const std::vector<eval::CaseMetrics>& ms) {
    for (const auto& [name, s] : eval::summarize(ms)) {
      sum.add_row({name, scope, eval::format_number(s.mean), eval::format_number(s.std),
                   eval::format_number(s.median), std::to_string(s.n_cases),
                   std::to_string(s.n_finite), std::to_string(s.n_nan),
                   std::to_string(s.n_pos_inf + s.n_neg_inf)});
      js[scope][name] = {{"mean", s.mean}, {"std", s.std}, {"median", s.median},
                         {"n_cases", s.n_cases}, {"n_finite", s.n_finite},
                         {"n_nan", s.n_nan}, {"n_inf", s.n_pos_inf + s.n_neg_inf}};
    }
  };
  const auto [crop, orig] = split_scopes(results);
  add("crop", crop);
  if (!orig.empty()) add("original", orig);
  eval::Series mean{"mean Dice (± std over cases)", {}, {}, {}};
  for (int64_t k = 0; k < o.eval.clicks; ++k) {
    std::vector<double> v;
    for (const auto& r : results) v.push_back(r.dice_per_click[k]);
    auto s = eval::summarize(v);
    sum.add_row({"dice_click" + std::to_string(k + 1), "crop", eval::format_number(s.mean),
                 eval::format_number(s.std), eval::format_number(s.median),
                 std::to_string(s.n_cases), std::to_string(s.n_finite), std::to_string(s.n_nan),
                 std::to_string(s.n_pos_inf + s.n_neg_inf)});
    js["dice_per_click"].push_back(std::isfinite(s.mean) ? nlohmann::json(s.mean) : nlohmann::json());
    mean.x.push_back(static_cast<double>(k + 1));
    mean.y.push_back(s.mean);
    mean.y_std.push_back(std::isfinite(s.std) ? s.std : 0.0);
  }
  sum.close();
  js["settings"] = {{"clicks", o.eval.clicks},
                    {"protocol", interaction::name(o.eval.protocol)},
                    {"multi_click", o.eval.multi_click},
                    {"threshold_on_logits", o.eval.threshold},
                    {"nsd_tolerance_mm", o.eval.nsd_tolerance_mm},
                    {"seed", o.eval.seed},
                    {"checkpoint", checkpoint}};
  io::write_file_atomically((fs::path(o.out_dir) / "summary.json").string(), js.dump(2));
  eval::ChartSpec chart;
  chart.title = "Dice vs clicks";
  chart.x_label = "clicks";
  chart.y_label = "Dice";
  chart.y_min = 0.0;
  chart.y_max = 1.0;
  chart.series = {mean};
  eval::write_line_chart_svg((fs::path(o.out_dir) / "dice_vs_clicks.svg").string(), chart);
  return results;
}

void print_summary(const std::vector<eval::CaseResult>& results, int64_t clicks) {
  const auto [crop, orig] = split_scopes(results);
  auto show = [](const char* scope, const std::vector<eval::CaseMetrics>& ms) {
    std::printf("%-10s", scope);
    for (const auto& [name, s] : eval::summarize(ms)) {
      std::printf("  %s %.4f±%.4f", name.c_str(), s.mean, std::isfinite(s.std) ? s.std : 0.0);
      if (s.n_nonfinite()) std::printf(" (%lld non-finite)", (long long)s.n_nonfinite());
    }
    std::printf("\n");
  };
  std::printf("%zu cases, %lld clicks\n", results.size(), (long long)clicks);
  std::vector<double> d1, dn;
  for (const auto& r : results) {
    d1.push_back(r.dice_per_click.front());
    dn.push_back(r.dice_per_click.back());
  }
  auto s1 = eval::summarize(d1), sn = eval::summarize(dn);
  std::printf("Dice@1  %.4f ± %.4f   Dice@%lld %.4f ± %.4f\n", s1.mean, s1.std, (long long)clicks,
              sn.mean, sn.std);
  show("crop", crop);
  if (!orig.empty()) show("original", orig);
}

}  // namespace msam::cli
