// One case's scores on a split, whichever made its mask: the model's click loop
// (evaluate_case) or another tool (score_prediction).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "msam/eval/metrics.h"

namespace msam::eval {

// Why a case was or was not scored. Only other tools' masks can be missing or unusable; a
// case that is not scored is still reported, never dropped.
enum class CaseStatus {
  kScored,
  kMissing,     // no prediction file for the case
  kMisaligned,  // shape, spacing, origin or direction differ from the scan's
  kInvalid,     // unreadable, not a mask, or more than one file for the case
};
inline const char* name(CaseStatus status) {
  switch (status) {
    case CaseStatus::kScored: return "scored";
    case CaseStatus::kMissing: return "missing";
    case CaseStatus::kMisaligned: return "misaligned";
    case CaseStatus::kInvalid: return "invalid";
  }
  return "?";
}

struct CaseScores {
  std::string case_id;
  CaseStatus status = CaseStatus::kScored;
  std::string message;                  // the reason a case was not scored
  std::vector<double> dice_per_click;   // Dice after clicks 1..N (the click loop only): in the
                                        // crop, on the scan's grid for sessions
  CaseMetrics crop;                     // in the preprocessed crop
  std::optional<CaseMetrics> original;  // on the original scan grid
  double seconds = 0;
};

// Lossless JSON form (every double bit for bit, NaN and ±Inf included), so that ranks that
// scored different cases hand them to rank 0 unchanged.
nlohmann::json to_json(const CaseScores& scores);
CaseScores case_scores_from_json(const nlohmann::json& j);

}  // namespace msam::eval
