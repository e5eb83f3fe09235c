// What several subcommands share: ITK-backed readers, logging and option helpers.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/eval/evaluator.h"
#include "msam/interaction/session.h"
#include "msam/model/msam.h"
#include "msam/train/config.h"

namespace msam::cli {

// Reads a case's image and label with ITK; empty in a build without ITK (the GPU machine),
// where training and evaluation read a prepared cache only.
data::CaseReader case_reader();
// The case's binarised ground truth on its original scan grid (for paste-back metrics);
// empty without ITK.
eval::OriginalLabelReader original_label_reader();

void log_line(const std::string& line);  // stderr, one line

// The autocast dtype of a --precision value (fp32, bf16, fp16) on `device`: kFloat, or
// kBFloat16 / kHalf, which need a CUDA device (the CPU runs fp32).
at::ScalarType autocast_dtype(const std::string& precision, const torch::Device& device);

// The preprocessing of msam segment and msam serve: what the checkpoint was trained with
// (the run configuration msam train records: data.spacing, the datasets' modality), unless
// the command line says otherwise (`spacing` non-empty, `modality` non-empty: auto, ct or mr),
// with a warning where the two differ. Files that record no run (reference .pth) get the
// command line's values, or the native spacing and modality auto.
void set_preprocessing(const std::string& checkpoint, const std::vector<double>& spacing,
                       const std::string& modality, interaction::SessionOptions& options);

// A checkpoint ready for clicks on `device` (CUDA graphs there); `summary` says what loaded.
model::MSAM load_inference_model(const std::string& checkpoint, const torch::Device& device,
                                 std::string* summary);

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
// The click options that msam eval and msam transfer share (--clicks, --protocol,
// --multi-click, --threshold, --seed) into `options`; `protocol` receives --protocol's text.
void add_click_options(CLI::App& app, eval::EvalOptions& options, std::string& protocol);
// `options` for a run: the protocol parsed, autocast from the run's precision.
void finish_eval_options(const train::Config& run, const std::string& protocol,
                         EvalRunOptions& options);

std::vector<eval::CaseResult> evaluate_entries(const std::string& checkpoint,
                                               const std::vector<std::string>& entries,
                                               const EvalRunOptions& options);

// Prints and returns the headline summary rows (metric, scope, summary).
void print_summary(const std::vector<eval::CaseResult>& results, int64_t clicks);

}  // namespace msam::cli
