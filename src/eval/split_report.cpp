#include "msam/eval/split_report.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "msam/data/geometry_ops.h"
#include "msam/eval/metric_table.h"
#include "msam/eval/overlay.h"
#include "msam/io/csv.h"
#include "msam/io/svg_chart.h"
#include "msam/io/safetensors.h"

namespace fs = std::filesystem;

namespace msam::eval {
namespace {

// The centre of the label's voxels (the crop's centre when empty): where overlays slice.
data::Index3 lesion_center(const at::Tensor& label) {
  auto idx = label.nonzero();
  if (idx.size(0) == 0) return {label.size(0) / 2, label.size(1) / 2, label.size(2) / 2};
  auto c = idx.to(torch::kDouble).mean(0);
  return {static_cast<int64_t>(c[0].item<double>()), static_cast<int64_t>(c[1].item<double>()),
          static_cast<int64_t>(c[2].item<double>())};
}

std::vector<Scope> scopes(const ReportColumns& columns) {
  std::vector<Scope> out;
  if (columns.crop) out.push_back(kCropScope);
  if (columns.original) out.push_back(kOriginalScope);
  return out;
}

// The scope of Dice per click in summary.csv.
const char* click_scope(const ReportColumns& columns) {
  return columns.crop ? kCropScope.name : kOriginalScope.name;
}

std::vector<const CaseScores*> scored(const SplitScores& s) {
  std::vector<const CaseScores*> out;
  for (const auto& c : s.cases)
    if (c.status == CaseStatus::kScored) out.push_back(&c);
  return out;
}

// The scored cases' metrics in `scope`.
std::vector<CaseMetrics> scope_metrics(const std::vector<const CaseScores*>& cases,
                                       const Scope& scope) {
  std::vector<CaseMetrics> out;
  for (const auto* c : cases)
    if (std::string(scope.name) == kCropScope.name) out.push_back(c->crop);
    else if (c->original) out.push_back(*c->original);
  return out;
}

std::vector<double> dice_after_click(const std::vector<const CaseScores*>& cases, int64_t k) {
  std::vector<double> v;
  for (const auto* c : cases) v.push_back(c->dice_per_click.at(k));
  return v;
}

std::vector<std::string> metric_cells(const std::optional<CaseMetrics>& m) {
  std::vector<std::string> out;
  for (const auto& info : metric_table())
    out.push_back(io::format_number(m ? (*m).*info.value : NAN));
  return out;
}

void write_per_case(const std::string& path, const SplitScores& s) {
  const auto& cols = s.columns;
  std::vector<std::string> header{"case"};
  for (int64_t k = 1; k <= cols.clicks; ++k) header.push_back("dice_click" + std::to_string(k));
  for (const auto& scope : scopes(cols))
    for (const auto& info : metric_table()) header.push_back(std::string(scope.prefix) + info.name);
  if (cols.seconds) header.push_back("seconds");
  if (cols.status) {
    header.push_back("status");
    header.push_back("message");
  }
  io::CsvWriter csv(path, header);
  for (const auto& c : s.cases) {
    const bool ok = c.status == CaseStatus::kScored;
    std::vector<std::string> row{c.case_id};
    for (int64_t k = 0; k < cols.clicks; ++k)
      row.push_back(io::format_number(ok ? c.dice_per_click.at(k) : NAN));
    if (cols.crop)
      for (const auto& cell : metric_cells(ok ? std::optional<CaseMetrics>(c.crop) : std::nullopt))
        row.push_back(cell);
    if (cols.original)
      for (const auto& cell : metric_cells(ok ? c.original : std::nullopt)) row.push_back(cell);
    if (cols.seconds) row.push_back(io::format_number(c.seconds));
    if (cols.status) {
      row.push_back(name(c.status));
      row.push_back(c.message);
    }
    csv.add_row(row);
  }
  csv.close();
}

nlohmann::json summary_json(const MetricSummary& s, int64_t unscored) {
  return {{"mean", s.mean},         {"std", s.std},       {"median", s.median},
          {"n_cases", s.n_cases},   {"n_finite", s.n_finite}, {"n_nan", s.n_nan},
          {"n_inf", s.n_pos_inf + s.n_neg_inf}, {"n_unscored", unscored}};
}

}  // namespace

void write_split_report(const std::string& out_dir, const SplitScores& s,
                        const nlohmann::json& settings) {
  fs::create_directories(out_dir);
  const fs::path out(out_dir);
  write_per_case((out / "per_case.csv").string(), s);

  const auto cases = scored(s);
  const int64_t unscored = static_cast<int64_t>(s.cases.size() - cases.size());
  io::CsvWriter sum((out / "summary.csv").string(),
                {"metric", "scope", "mean", "std", "median", "n_cases", "n_finite", "n_nan",
                 "n_inf", "n_unscored"});
  nlohmann::json js = nlohmann::json::object();
  auto add = [&](const std::string& metric, const std::string& scope, const MetricSummary& m) {
    sum.add_row({metric, scope, io::format_number(m.mean), io::format_number(m.std),
                 io::format_number(m.median), std::to_string(m.n_cases), std::to_string(m.n_finite),
                 std::to_string(m.n_nan), std::to_string(m.n_pos_inf + m.n_neg_inf),
                 std::to_string(unscored)});
  };
  for (const auto& scope : scopes(s.columns))
    for (const auto& [metric, m] : summarize(scope_metrics(cases, scope))) {
      add(metric, scope.name, m);
      js[scope.name][metric] = summary_json(m, unscored);
    }
  io::Series mean{"mean Dice (± std over cases)", {}, {}, {}};
  for (int64_t k = 0; k < s.columns.clicks; ++k) {
    const auto m = summarize(dice_after_click(cases, k));
    add("dice_click" + std::to_string(k + 1), click_scope(s.columns), m);
    js["dice_per_click"].push_back(std::isfinite(m.mean) ? nlohmann::json(m.mean)
                                                         : nlohmann::json());
    mean.x.push_back(static_cast<double>(k + 1));
    mean.y.push_back(m.mean);
    mean.y_std.push_back(std::isfinite(m.std) ? m.std : 0.0);
  }
  sum.close();
  std::map<std::string, int64_t> counts{{"total", static_cast<int64_t>(s.cases.size())},
                                        {name(CaseStatus::kScored), 0}};
  for (const auto& c : s.cases) ++counts[name(c.status)];
  js["cases"] = counts;
  js["settings"] = settings;
  io::write_file_atomically((out / "summary.json").string(), js.dump(2));
  if (s.columns.clicks > 0) {
    io::ChartSpec chart;
    chart.title = "Dice vs clicks";
    chart.x_label = "clicks";
    chart.y_label = "Dice";
    chart.y_min = 0.0;
    chart.y_max = 1.0;
    chart.series = {mean};
    io::write_line_chart_svg((out / "dice_vs_clicks.svg").string(), chart);
  }
}

std::string summary_text(const SplitScores& s) {
  std::string text;
  char line[256];
  const auto cases = scored(s);
  std::snprintf(line, sizeof line, "%zu cases", s.cases.size());
  text += line;
  if (cases.size() < s.cases.size()) {
    std::map<std::string, int64_t> counts;
    for (const auto& c : s.cases) ++counts[name(c.status)];
    for (const auto& [status, n] : counts) text += ", " + std::to_string(n) + " " + status;
  }
  if (s.columns.clicks > 0) {
    std::snprintf(line, sizeof line, ", %lld clicks", static_cast<long long>(s.columns.clicks));
    text += line;
  }
  text += "\n";
  if (s.columns.clicks > 0 && !cases.empty()) {
    const auto s1 = summarize(dice_after_click(cases, 0));
    const auto sn = summarize(dice_after_click(cases, s.columns.clicks - 1));
    std::snprintf(line, sizeof line, "Dice@1  %.4f ± %.4f   Dice@%lld %.4f ± %.4f\n", s1.mean,
                  s1.std, static_cast<long long>(s.columns.clicks), sn.mean, sn.std);
    text += line;
  }
  for (const auto& scope : scopes(s.columns)) {
    const auto ms = scope_metrics(cases, scope);
    if (ms.empty()) continue;
    std::snprintf(line, sizeof line, "%-10s", scope.name);
    text += line;
    for (const auto& [metric, m] : summarize(ms)) {
      std::snprintf(line, sizeof line, "  %s %.4f±%.4f", metric.c_str(), m.mean,
                    std::isfinite(m.std) ? m.std : 0.0);
      text += line;
      if (m.n_nonfinite()) {
        std::snprintf(line, sizeof line, " (%lld non-finite)",
                      static_cast<long long>(m.n_nonfinite()));
        text += line;
      }
    }
    text += "\n";
  }
  return text;
}

std::string case_file_name(const std::string& case_id) {
  std::string name = case_id;
  for (auto& ch : name)
    if (ch == '/' || ch == '\\' || ch == ' ') ch = '_';
  return name;
}

void write_case_overlay(const std::string& out_dir, const data::CachedCase& c,
                        const at::Tensor& mask, const std::vector<interaction::Click>& clicks) {
  const auto dir = fs::path(out_dir) / "overlays";
  fs::create_directories(dir);
  render_overlay_png((dir / (case_file_name(c.info.case_id) + ".png")).string(),
                     c.image.to(torch::kFloat), c.label, mask, clicks, lesion_center(c.label));
}

void write_scan_overlay(const std::string& out_dir, const std::string& case_id,
                        const data::Volume& scan, const data::Volume& label,
                        const data::Volume& mask, const std::vector<interaction::Click>& clicks) {
  const auto ras = data::reorient_to_ras(scan);
  const auto ras_label = data::reorient_to_ras(label).volume.data;
  const auto ras_mask = data::reorient_to_ras(mask).volume.data;
  std::vector<interaction::Click> ras_clicks;
  for (const auto& c : clicks) {
    const data::Point3 p{static_cast<double>(c.voxel[0]), static_cast<double>(c.voxel[1]),
                         static_cast<double>(c.voxel[2])};
    const auto v = data::world_to_voxel(ras.volume.geometry, data::voxel_to_world(scan.geometry, p));
    ras_clicks.push_back({{std::llround(v[0]), std::llround(v[1]), std::llround(v[2])}, c.label});
  }
  const auto dir = fs::path(out_dir) / "overlays";
  fs::create_directories(dir);
  render_overlay_png((dir / (case_file_name(case_id) + ".png")).string(),
                     ras.volume.data.to(torch::kFloat), ras_label, ras_mask, ras_clicks,
                     lesion_center(ras_label));
}

}  // namespace msam::eval
