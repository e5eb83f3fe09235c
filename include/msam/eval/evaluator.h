// Evaluation of a trained model on prepared cases: the refinement loop per case with
// simulated clicks, Dice after every click and the full metric set after the last one, in
// the 128³ crop (comparable with the paper) and optionally on the original scan grid.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/eval/case_scores.h"
#include "msam/eval/metrics.h"
#include "msam/interaction/click.h"
#include "msam/model/msam.h"

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
  // Test-time mirroring (interaction/mirroring.h): each click's mask the mean over the
  // volume's 8 mirror images.
  bool mirror = false;
  // kBFloat16 / kHalf: the model runs under CUDA autocast (the run's `precision`).
  at::ScalarType amp_dtype = at::kFloat;
};

struct CaseResult {
  // Dice after each click; the metrics after the last one, in the crop and (when an
  // OriginalLabelReader is given) after paste-back onto the original scan grid.
  CaseScores scores;
  std::vector<interaction::Click> clicks;  // in the crop
  at::Tensor mask;                         // final crop mask, uint8 (X, Y, Z)
};

// Ground truth of a case on its original grid (binarised), for the original scope; the
// ITK-backed implementation lives in the CLI.
using OriginalLabelReader = std::function<data::Volume(const data::CacheEntryInfo&)>;

// The seed of a case's simulated clicks: from the evaluation's seed and the case id alone, so
// that a case gets the same clicks whichever rank, order or path scores it.
uint64_t case_seed(uint64_t seed, const std::string& case_id);

// One case. Its clicks depend only on (options.seed, case id), not on evaluation order.
CaseResult evaluate_case(model::MSAM& model, const data::CachedCase& c, const EvalOptions& options,
                         const torch::Device& device, const OriginalLabelReader& original = {});

}  // namespace msam::eval
