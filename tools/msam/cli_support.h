// What several subcommands share: ITK-backed readers and option helpers.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/dist/process_group.h"
#include "msam/eval/prediction_scoring.h"
#include "msam/eval/split_evaluation.h"
#include "msam/interaction/session.h"
#include "msam/model/msam.h"
#include "msam/train/config.h"

namespace msam::cli {

// Reads a case's image and label with ITK; empty in a build without ITK (the GPU machine),
// where training and evaluation read a prepared cache only.
data::CaseReader case_reader();

// The autocast dtype of a --precision value (fp32, bf16, fp16) on `device`: kFloat, or
// kBFloat16 / kHalf, which need a CUDA device (the CPU runs fp32).
at::ScalarType autocast_dtype(const std::string& precision, const torch::Device& device);

// The options msam segment and msam serve share: preprocessing (--spacing, --modality), the
// mask's threshold (--threshold) and which clicks each iteration takes (--multi-click,
// --newest-click), each left to the checkpoint where not given, and --max-windows.
struct SessionFlags {
  std::vector<double> spacing;
  std::string modality;
  double threshold = 0;
  bool multi_click = false, newest_click = false;
  CLI::Option* threshold_option = nullptr;
  int max_windows = interaction::SessionOptions{}.max_windows;
};
void add_session_options(CLI::App& app, SessionFlags& flags);
// --max-windows alone (msam eval --sessions; add_session_options includes it).
CLI::Option* add_max_windows_option(CLI::App& app, int& max_windows);

// A session as the checkpoint was trained (the run configuration msam train records:
// data.spacing, the datasets' modality, loop.threshold and loop.multi_click), unless the
// command line says otherwise, with a warning where the preprocessing differs. Files that
// record no run (reference .pth) get the command line's values, or the native spacing,
// modality auto and the reference's loop (logits > 0.5, the newest click only).
void set_session_options(const std::string& checkpoint, const SessionFlags& flags,
                         interaction::SessionOptions& options);

// A checkpoint ready for clicks on `device` (CUDA graphs there); `summary` says what loaded.
model::MSAM load_inference_model(const std::string& checkpoint, const torch::Device& device,
                                 std::string* summary);

// The click options that msam eval and msam transfer share (--clicks, --protocol,
// --multi-click, --threshold, --seed) into `options`; `protocol` receives --protocol's text.
void add_click_options(CLI::App& app, eval::EvalOptions& options, std::string& protocol);
// msam eval: the run's crops must be what the checkpoint's model takes (data.roi = the model's
// input size, else an Error naming both); preprocessing that differs from what the checkpoint
// recorded of its training (data.spacing, the datasets' modality and target labels) is
// worth a warning, since the model then sees inputs unlike its training data.
void check_run_against_checkpoint(const std::string& checkpoint, const model::MSAMConfig& model,
                                  const train::Config& run);
// How the run's model runs: its device (this rank's GPU) and its precision's autocast dtype.
eval::RunSettings run_settings(const train::Config& run);
// This process's rank in the job its launcher (torchrun, srun, msam train --nproc) started,
// connected with the run's dist.timeout and its device's backend; null for a single process.
std::shared_ptr<dist::ProcessGroup> join_process_group(const train::Config& run);
// What evaluation needs of ITK: the original labels, writing masks, reading other tools'
// masks. Empty without ITK.
eval::SplitEvalHooks split_eval_hooks();
// The scans of `run`'s datasets as the run reads them (msam eval --sessions); it lists the
// datasets' cases when made. Empty without ITK.
eval::ScanReader scan_reader(const train::Config& run);
eval::PredictionHooks prediction_hooks();

}  // namespace msam::cli
