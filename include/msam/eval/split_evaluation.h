// Evaluation of a model on a split: every cache entry through the click loop in its crop
// (evaluate_case) or, with `sessions`, its scan through a session (evaluate_session_case),
// written as a split report (split_report.h), with the masks and overlays when asked. `msam
// eval` and `msam transfer` are this plus option parsing.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "msam/data/synth.h"
#include "msam/dist/process_group.h"
#include "msam/eval/evaluator.h"
#include "msam/eval/session_evaluation.h"
#include "msam/eval/split_report.h"
#include "msam/model/msam.h"

namespace msam::eval {

// What a run configuration says about how its model runs: its device (train::device_of, this
// rank's GPU), and its precision as an autocast dtype. eval sits beside train, not above it,
// so the caller reads these two off the configuration.
struct RunSettings {
  torch::Device device{torch::kCPU};
  at::ScalarType amp_dtype = at::kFloat;
};

struct SplitEvalOptions {
  EvalOptions eval;
  std::string out_dir;
  bool original_grid = true;  // also score the mask pasted back onto the original scan
  bool save_masks = false;    // masks/<case id>.nii.gz in the scan's original geometry
  int overlays = 3;           // overlays/<case>.png for the first N cases
  torch::Device device{torch::kCPU};
  std::string model_name;     // summary.json's settings.checkpoint
  // Each case's scan through a session, scored on its own grid only (the crop scope has no
  // meaning there), and clicks/<case>.csv written: what a person gets.
  bool sessions = false;
  interaction::SessionOptions session;  // its spacing, max_windows (the rest is set per case)
  // Data parallelism: this rank evaluates every size()-th case from its rank on, the scores
  // are gathered, and rank 0 writes the report (null = one process does everything).
  std::shared_ptr<dist::ProcessGroup> group;
};

// The evaluation of a run: the clicks as given (`clicks`: the command line's values, the
// reference's by default, with the protocol as text in `protocol`, parsed naming
// "--protocol" in errors), on the run's device under its precision's autocast.
SplitEvalOptions split_eval_options(const RunSettings& run, const EvalOptions& clicks,
                                    const std::string& protocol);

// What needs image IO (ITK), injected so that this library builds and runs without it.
struct SplitEvalHooks {
  OriginalLabelReader original_label;  // the original scope; empty: the crop only
  data::VolumeWriter write_mask;       // needed for save_masks
  ScanReader read_scan;                // needed for sessions (with original_label)
};

// Evaluates every entry with `model` (already on options.device) and writes the report
// into options.out_dir. With options.group every rank returns every case's scores; the files
// are the one-process run's (seconds aside). Throws msam::Error for an empty split, save_masks
// without a mask writer, or sessions without the scan and label readers.
SplitScores evaluate_split(model::MSAM& model, const std::vector<std::string>& entries,
                           const SplitEvalOptions& options, const SplitEvalHooks& hooks);

}  // namespace msam::eval
