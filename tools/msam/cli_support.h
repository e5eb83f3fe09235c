// What several subcommands share: ITK-backed readers, logging and option helpers.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/eval/evaluator.h"
#include "msam/train/config.h"

namespace msam::cli {

// Reads a case's image and label with ITK; empty in a build without ITK (the GPU machine),
// where training and evaluation read a prepared cache only.
data::CaseReader case_reader();
// The case's binarised ground truth on its original scan grid (for paste-back metrics);
// empty without ITK.
eval::OriginalLabelReader original_label_reader();

void log_line(const std::string& line);  // stderr, one line

train::ClickProtocol parse_protocol(const std::string& name);

// Evaluates every cache entry with `model` and writes per_case.csv, summary.csv,
// summary.json, dice_vs_clicks.svg (and masks / overlays when asked) into `out_dir`.
// Returns the per-case results.
struct EvalRunOptions {
  eval::EvalOptions eval;
  std::string out_dir;
  bool original_grid = true;  // also score the mask pasted back onto the original scan
  bool save_masks = false;    // NIfTI masks in the original geometry
  int overlays = 3;           // overlay PNGs for the first N cases
  std::string device = "cpu";
};
std::vector<eval::CaseResult> evaluate_entries(const std::string& checkpoint,
                                               const std::vector<std::string>& entries,
                                               const EvalRunOptions& options);

// Prints and returns the headline summary rows (metric, scope, summary).
void print_summary(const std::vector<eval::CaseResult>& results, int64_t clicks);

}  // namespace msam::cli
