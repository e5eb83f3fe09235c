// What an evaluation of a split writes and prints, from each case's scores: per_case.csv,
// summary.csv, summary.json, dice_vs_clicks.svg and overlays. The model's evaluation and the
// scoring of other tools' masks write the same files, so `msam compare` reads either.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/eval/case_scores.h"
#include "msam/interaction/click.h"

namespace msam::eval {

// per_case.csv's columns: case, dice_click1..N, the metrics of the crop scope, those of the
// original scope (orig_*), then seconds, or status and message. Dice per click is the crop's,
// or the original grid's where there is no crop scope (sessions).
struct ReportColumns {
  int64_t clicks = 0;     // dice_click<k> columns and dice_vs_clicks.svg (0: neither)
  bool crop = true;       // the crop's metrics and the "crop" scope of the summaries
  bool original = false;  // orig_* columns and the "original" scope of the summaries
  bool seconds = false;   // time per case (the click loop's)
  bool status = false;    // status and message (other tools' masks)
};

struct SplitScores {
  ReportColumns columns;
  std::vector<CaseScores> cases;  // in the split's order
};

// Writes into `out_dir` (created):
// - per_case.csv: one row per case; a case not scored has nan metrics and says why in
//   status and message;
// - summary.csv and summary.json: per metric and scope, over the scored cases, mean, sample
//   std, median, n_cases, n_finite, n_nan, n_inf, and n_unscored (the split's cases that
//   were not scored); Dice per click; summary.json also counts the cases per status and
//   holds `settings`;
// - dice_vs_clicks.svg when there are clicks.
void write_split_report(const std::string& out_dir, const SplitScores& scores,
                        const nlohmann::json& settings);

// The lines printed after an evaluation: the number of cases (and of those not scored, by
// status), Dice@1 and Dice@N, mean ± std per metric and scope.
std::string summary_text(const SplitScores& scores);

// A case id as a file name ('/', '\' and ' ' become '_'), for overlays/.
std::string case_file_name(const std::string& case_id);

// overlays/<case>.png under `out_dir`: the crop through the lesion's centre with its label,
// `mask` (crop-sized) and the clicks (render_overlay in report.h).
void write_case_overlay(const std::string& out_dir, const data::CachedCase& c,
                        const at::Tensor& mask, const std::vector<interaction::Click>& clicks);
// The same for a scan on its own grid (sessions): the scan, its label and `mask` (both on the
// scan's grid) reoriented to RAS+, the clicks (the scan's voxel indices) with them.
void write_scan_overlay(const std::string& out_dir, const std::string& case_id,
                        const data::Volume& scan, const data::Volume& label,
                        const data::Volume& mask, const std::vector<interaction::Click>& clicks);

}  // namespace msam::eval
