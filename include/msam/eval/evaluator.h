// Evaluation of a trained model on prepared cases: the refinement loop per case with
// simulated clicks, Dice after every click and the full metric set after the last one, in
// the 128³ crop (comparable with the paper) and optionally on the original scan grid.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/eval/metrics.h"
#include "msam/eval/report.h"
#include "msam/model/msam.h"
#include "msam/interaction/click.h"

namespace msam::eval {

struct EvalOptions {
  int64_t clicks = 10;
  interaction::ClickProtocol protocol = interaction::ClickProtocol::kRandom;
  bool multi_click = false;
  // Mask = logits > threshold, and each next click goes to that mask's errors (an annotator
  // corrects the mask they see). 0.5 on logits is what the reference used for both (a slip
  // that its published numbers carry); 0 is the probabilistic 0.5.
  double threshold = interaction::kReferenceClickThreshold;
  double nsd_tolerance_mm = 1.0;
  uint64_t seed = 0;
  // kBFloat16 / kHalf: the model runs under CUDA autocast (the run's `precision`).
  at::ScalarType amp_dtype = at::kFloat;
};

struct CaseResult {
  std::string case_id;
  std::vector<double> dice_per_click;  // crop Dice after clicks 1..N
  CaseMetrics crop;                    // after the last click, in the preprocessed crop
  std::optional<CaseMetrics> original; // after paste-back onto the original scan grid
  std::vector<interaction::Click> clicks;  // in the crop
  at::Tensor mask;                     // final crop mask, uint8 (X, Y, Z)
  double seconds = 0;
};

// Ground truth of a case on its original grid (binarised), for paste-back metrics; the
// ITK-backed implementation lives in the CLI.
using OriginalLabelReader = std::function<data::Volume(const data::CacheEntryInfo&)>;

// One case. Its clicks depend only on (options.seed, case id), not on evaluation order.
CaseResult evaluate_case(model::MSAM& model, const data::CachedCase& c, const EvalOptions& options,
                         const torch::Device& device, const OriginalLabelReader& original = {});

}  // namespace msam::eval
